"""Kill -9 at a fault point of ``RunDir.end_epoch`` and ``--resume auto``: the resumed run's metrics.jsonl and final
weights equal an uninterrupted run's, for each trainer (CLIP pre-training, Stage 1, Stage 2)."""
import pytest
import torch
from clip_fairness_adapter.__main__ import main
from common_utils.train import load_checkpoint
from common_utils.train.testing import FAULT_ENV, metrics_rows, run_forked
from conftest import CONFIG, TINY_CLIP


def assert_resumes_exactly(args: list[str], base, faults: list[str]) -> None:
    ref = base / "ref"
    assert run_forked(main, [*args, f"run_dir={ref}"]) == 0
    expected = metrics_rows(ref / "metrics.jsonl")
    weights = load_checkpoint(ref / "last.pth")["models"]
    for fault in faults:
        run = base / fault.replace(":", "_")
        assert run_forked(main, [*args, f"run_dir={run}"], env={FAULT_ENV: fault}) == -9, fault
        assert run_forked(main, [*args, f"run_dir={run}", "--resume", "auto"]) == 0, fault
        assert metrics_rows(run / "metrics.jsonl") == expected, fault
        resumed = load_checkpoint(run / "last.pth")["models"]
        for name, state in weights.items():
            for k, v in state.items():
                assert torch.equal(v, resumed[name][k]), (fault, name, k)


def test_pretrain_clip_resumes(data_root, tmp_path):
    args = ["pretrain_clip", "--config", str(CONFIG / "pretrain_clip.yaml"), f"data.root={data_root}",
            f"clip.model_config={TINY_CLIP}", "device=cpu", "train.epochs=2"]
    assert_resumes_exactly(args, tmp_path, ["after_checkpoint:1"])
    assert (tmp_path / "ref" / "open_clip" / "open_clip_model.safetensors").is_file()


def test_stage1_resumes(data_root, clip_run, tmp_path):
    args = ["train_stage1", "--config", str(CONFIG / "tiny_stage1.yaml"), f"data.root={data_root}",
            f"clip.name=local-dir:{clip_run}", "clip.model_config=null", f"data.cache_dir={tmp_path / 'cache'}",
            "train.epochs=2"]
    assert_resumes_exactly(args, tmp_path, ["after_checkpoint:1", "before_checkpoint:2"])
    export = load_checkpoint(tmp_path / "ref" / "best.pth")
    assert sorted(export["model_state_dict"]) == [f"additive_adapter.adapter.{i}.{w}" for i in (0, 3, 6)
                                                  for w in ("bias", "weight")]


@pytest.mark.parametrize("weighting", ["dynamic", "fixed"])
def test_stage2_resumes(data_root, clip_run, stage1_run, tmp_path, weighting):
    args = ["train_stage2", "--config", str(CONFIG / "tiny_stage2.yaml"), f"data.root={data_root}",
            f"clip.name=local-dir:{clip_run}", "clip.model_config=null", f"data.cache_dir={tmp_path / 'cache'}",
            f"stage1_checkpoint={stage1_run / 'best.pth'}", "train.epochs=2", f"loss_weighting.type={weighting}",
            "loss_weighting.fair_warmup_epochs=1"]
    faults = ["after_checkpoint:1", "after_metrics:1"] if weighting == "dynamic" else ["after_checkpoint:1"]
    assert_resumes_exactly(args, tmp_path, faults)


def test_a_run_refuses_to_clobber_another(data_root, clip_run, tmp_path):
    args = ["train_stage1", "--config", str(CONFIG / "tiny_stage1.yaml"), f"data.root={data_root}",
            f"clip.name=local-dir:{clip_run}", "clip.model_config=null", f"data.cache_dir={tmp_path / 'cache'}",
            "train.epochs=1", f"run_dir={tmp_path / 'run'}"]
    assert run_forked(main, args) == 0
    assert run_forked(main, args) == 1  # RunDirError: holds another run
    assert run_forked(main, [*args, "--overwrite"]) == 0
