"""Stage 1 trainer on the engine: kill -9 at a fault point + --resume auto equals an uninterrupted run (metrics.jsonl,
weights, best-epoch files), early stopping survives a resume, the average is tcm_add-format, config errors."""
import pytest
import torch
from audio_xai.__main__ import main
from audio_xai.model.conformertcm import build_detector, load_tcm_checkpoint
from audio_xai.trainer.stage1 import average_state_dicts
from common_utils.train import ConfigError, RunDirError
from common_utils.train.testing import FAULT_ENV, metrics_rows, run_forked
from conftest import ROOT, make_cfg

TINY = ["--config", str(ROOT / "configs" / "tiny.yaml"), "data.cut=8000", "stage1.epochs=3", "stage1.patience=5",
        "stage1.batch_size=4", "stage1.n_average=2", "stage1.rawboost_algo=5", "stage1.accum_steps=2"]


def _args(data_root, run_dir, *extra):
    return ["train-stage1", *TINY, f"data.root={data_root}", f"run_dir={run_dir}", *extra]


def _weights(run_dir):
    return torch.load(run_dir / "stage1" / "last.pth", weights_only=True)["models"]["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    run = tmp_path_factory.mktemp("s1ref")
    assert run_forked(main, _args(data_root, run)) == 0
    return run


@pytest.mark.parametrize("fault", ["after_checkpoint:1", "before_checkpoint:2", "after_metrics:2"])
def test_kill_and_resume_equals_uninterrupted_run(tmp_path, data_root, reference, fault):
    assert run_forked(main, _args(data_root, tmp_path), env={FAULT_ENV: fault}) == -9
    assert run_forked(main, _args(data_root, tmp_path, "--resume", "auto")) == 0
    got, want = tmp_path / "stage1", reference / "stage1"
    assert metrics_rows(got / "metrics.jsonl") == metrics_rows(want / "metrics.jsonl")
    assert len(metrics_rows(got / "metrics.jsonl")) == 3
    a, b = _weights(tmp_path), _weights(reference)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    names = [sorted(p.name for p in (d / "epochs").glob("*.pth")) for d in (got, want)]
    assert names[0] == names[1]
    avg_a, avg_b = (torch.load(d / "avg_2_best.pth", weights_only=True) for d in (got, want))
    assert all(torch.equal(avg_a[k], avg_b[k]) for k in avg_a)


def test_outputs_and_refusal_to_clobber(tmp_path, data_root, reference):
    out = reference / "stage1"
    epochs = sorted((out / "epochs").glob("epoch_*.pth"))
    assert len(epochs) == 2  # the n_average best by dev loss
    manual = average_state_dicts(epochs)
    avg = torch.load(out / "avg_2_best.pth", weights_only=True)
    assert torch.equal(manual["LL.weight"], avg["LL.weight"])
    assert any(k.startswith("ssl_model.model.encoder.pos_conv.0.weight_g") for k in avg)  # fairseq names
    model = build_detector(make_cfg(reference, tmp_path).detector)
    load_tcm_checkpoint(model, out / "avg_2_best.pth")  # the released-checkpoint loader reads it strictly
    lines = (out / "scores_eval.txt").read_text().splitlines()
    assert len(lines) == 4 and all(len(line.split()) == 2 for line in lines)
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["epoch"] == 3 and state["config"]["stage1"]["accum_steps"] == 2
    assert {e for _, e in state["extra"]["best"]} == {int(p.stem.split("_")[1]) for p in epochs}
    with pytest.raises(RunDirError, match="--resume auto"):
        main(_args(data_root, reference))


def test_early_stopping_is_kept_across_a_resume(tmp_path, data_root):
    """patience=1 and a dev loss that cannot improve (lr 0) stop after 2 epochs; a resume does not train on."""
    args = _args(data_root, tmp_path, "stage1.patience=1", "stage1.lr=0.0", "stage1.epochs=4")
    assert run_forked(main, args) == 0
    rows = metrics_rows(tmp_path / "stage1" / "metrics.jsonl")
    assert len(rows) == 2
    assert run_forked(main, args + ["--resume", "auto"]) == 0
    assert metrics_rows(tmp_path / "stage1" / "metrics.jsonl") == rows


def test_config_rejects_unknown_and_renamed_keys(tmp_path, data_root):
    with pytest.raises(ConfigError, match="stage1.learning_rate"):
        make_cfg(data_root, tmp_path, "stage1.learning_rate=0.1")
    with pytest.raises(ConfigError, match="stage1.max_epochs"):
        make_cfg(data_root, tmp_path, "stage1.max_epochs=3")
    with pytest.raises(ConfigError, match="model.name"):
        make_cfg(data_root, tmp_path, "model.name=xai_stage2")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  prototype_mod: ema\n")
    with pytest.raises(ConfigError, match="prototype_mod"):
        main(["train-xai", "--config", str(bad)])
