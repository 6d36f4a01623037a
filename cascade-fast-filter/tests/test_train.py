"""Training: a tiny model learns the synthetic task; --resume reproduces the uninterrupted run exactly."""
import csv
import json

import torch
from cascade_fast_filter.stage1.train_stage1 import train
from common_utils.train import load_checkpoint
from conftest import tiny_cfg


def test_tiny_model_learns_synthetic_task(ai_images, tmp_path):
    cfg = tiny_cfg(ai_images, tmp_path / "run", "train.epochs=15")
    result = train(cfg)
    assert result["best_val_auc"] > 0.9, result["history"]
    run = tmp_path / "run"
    best = load_checkpoint(run / "best_model.pth")
    assert best["val_auc"] == result["best_val_auc"] and best["config"]["model"]["name"] == cfg.model.name
    with open(run / "training_log.csv") as f:
        log = list(csv.DictReader(f))
    assert len(log) == cfg.train.epochs and {"train_loss", "train_acc", "val_auc", "val_f1"} <= set(log[0])
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == cfg.train.epochs and "val_auc" in json.loads(lines[-1])
    assert (run / "config.yaml").is_file()


def test_resume_reproduces_uninterrupted_run(ai_images, tmp_path):
    # small but with every stateful piece on: warmup+cosine, EMA, grad accumulation, augmentation RNG
    opts = ["train.epochs=3", "model.input_size=32", "train.batch_size=32", "train.ema=true", "train.ema_decay=0.9",
            "train.grad_accum=2", "augment.color_jitter=[0.2,0.2,0.2,0.05]", "train.warmup_epochs=1"]
    full = train(tiny_cfg(ai_images, tmp_path / "full", *opts))
    train(tiny_cfg(ai_images, tmp_path / "cut", *opts), stop_after_epoch=1)  # interrupted after epoch 1
    assert load_checkpoint(tmp_path / "cut" / "last.pth")["epoch"] == 1
    resumed = train(tiny_cfg(ai_images, tmp_path / "cut", *opts), resume="auto")
    a, b = load_checkpoint(tmp_path / "full" / "last.pth"), load_checkpoint(tmp_path / "cut" / "last.pth")
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert [h["val_auc"] for h in full["history"]] == [h["val_auc"] for h in resumed["history"]]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    best_a, best_b = load_checkpoint(tmp_path / "full" / "best_model.pth"), load_checkpoint(tmp_path / "cut" /
                                                                                           "best_model.pth")
    assert all(torch.equal(best_a["model"][k], best_b["model"][k]) for k in best_a["model"])
