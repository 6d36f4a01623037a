"""Training on the engine: a run killed at any fault point and resumed equals an uninterrupted one (metrics, weights,
EMA, early-stopping state); exports are not run states; runs are not clobbered. (test_pipeline: the model learns.)"""
import csv

import pytest
import torch
from cascade_fast_filter.__main__ import main
from cascade_fast_filter.stage1.train_stage1 import EarlyStopping
from common_utils.train import RunDirError, RunStateError, load_checkpoint
from common_utils.train.testing import FAULT_ENV, metrics_rows, run_forked
from conftest import CLIP_MANIFESTS, ROOT

# small, but with every stateful piece on: warmup + cosine, EMA, gradient accumulation, augmentation RNG
RESUME_OPTS = ["train.epochs=3", "model.input_size=32", "train.batch_size=32", "train.ema=true", "train.ema_decay=0.9",
               "train.accum_steps=2", "augment.color_jitter=[0.2,0.2,0.2,0.05]", "train.warmup_epochs=1"]


def cli(data, run, *opts):
    return ["train", "--config", str(ROOT / "configs" / "tiny.yaml"), f"data.root={data}", f"run_dir={run}",
            "train.log_every=100000", *CLIP_MANIFESTS, *opts]


def same_weights(a, b):
    a, b = load_checkpoint(a), load_checkpoint(b)
    for part in ("models", "ema"):
        for name, state in a[part].items():
            for k, v in state.items():
                assert torch.equal(v, b[part][name][k]), (part, name, k)
    return a, b


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory):
    """The uninterrupted run the interrupted ones must reproduce."""
    ref = tmp_path_factory.mktemp("reference") / "run"
    assert run_forked(main, cli(clips, ref, *RESUME_OPTS)) == 0
    return ref


@pytest.mark.parametrize("fault", ["after_checkpoint:1", "before_checkpoint:2", "after_metrics:1"])
def test_killed_run_resumes_to_the_uninterrupted_result(clips, reference, tmp_path, fault):
    ref, run = reference, tmp_path / "run"
    assert run_forked(main, cli(clips, run, *RESUME_OPTS), env={FAULT_ENV: fault}) == -9
    assert run_forked(main, [*cli(clips, run, *RESUME_OPTS), "--resume", "auto"]) == 0
    assert metrics_rows(run / "metrics.jsonl") == metrics_rows(ref / "metrics.jsonl")
    with open(run / "training_log.csv") as f, open(ref / "training_log.csv") as g:
        assert [r["val_auc"] for r in csv.DictReader(f)] == [r["val_auc"] for r in csv.DictReader(g)]
    a, _ = same_weights(ref / "last.pth", run / "last.pth")
    assert set(a["ema"]) == {"model"} and a["steps"]["model"] > 0
    best_a, best_b = load_checkpoint(ref / "best_model.pth"), load_checkpoint(run / "best_model.pth")
    assert all(torch.equal(best_a["model"][k], best_b["model"][k]) for k in best_a["model"])


@pytest.mark.parametrize("fault", ["after_checkpoint:1", "after_checkpoint:2"])
def test_early_stopping_state_survives_a_resume(clips, tmp_path, fault):
    """patience 1 with a gain no epoch can make: the run stops after epoch 2 of 5, resumed or not."""
    opts = ["train.epochs=5", "model.input_size=32", "train.batch_size=64", "train.patience=1", "train.min_delta=1.0"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert run_forked(main, cli(clips, ref, *opts)) == 0
    assert len(metrics_rows(ref / "metrics.jsonl")) == 2
    assert run_forked(main, cli(clips, run, *opts), env={FAULT_ENV: fault}) == -9
    assert run_forked(main, [*cli(clips, run, *opts), "--resume", "auto"]) == 0
    assert metrics_rows(run / "metrics.jsonl") == metrics_rows(ref / "metrics.jsonl")
    extra = load_checkpoint(run / "last.pth")["extra"]
    assert extra["stopped_early"] and extra["best_epoch"] == 1 and extra["epochs_since_best"] == 1
    same_weights(ref / "last.pth", run / "last.pth")


def test_early_stopping_bookkeeping():
    stop = EarlyStopping(patience=2, min_delta=0.01)
    assert stop.update(0.80, 1) and not stop.update(0.805, 2) and not stop.stopped
    assert stop.update(0.90, 3) and stop.best_epoch == 3
    assert not stop.update(float("nan"), 4) and not stop.update(0.90, 5) and stop.stopped
    again = EarlyStopping(2, 0.01, stop.state())
    assert (again.best, again.best_epoch, again.since_best, again.stopped) == (0.90, 3, 2, True)
    never = EarlyStopping(patience=0, min_delta=0.0)
    for epoch in range(1, 30):
        never.update(0.5, epoch)
    assert not never.stopped


def test_export_is_not_a_run_state_and_runs_are_not_clobbered(clips, tmp_path):
    run = tmp_path / "run"
    opts = ["train.epochs=1", "model.input_size=32", "train.batch_size=64"]
    assert main(cli(clips, run, *opts)) == 0
    with pytest.raises(RunStateError, match="last.pth"):
        main([*cli(clips, run, *opts), "--resume", str(run / "best_model.pth")])
    with pytest.raises(RunDirError, match="--resume auto"):
        main(cli(clips, run, *opts))
    assert main([*cli(clips, run, *opts), "--overwrite"]) == 0
