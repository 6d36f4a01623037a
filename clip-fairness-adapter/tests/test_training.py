"""Tiny end-to-end runs on the embedded data with the pre-trained tiny CLIP: learning, evaluation (with and without
demographics, video level), inference on a folder, cache == no cache, frozen/trainable parameters, guards."""
import csv
import json
import math

import pytest
import torch
from clip_fairness_adapter.losses import build_fair_loss, build_loss_weighting
from clip_fairness_adapter.model import build_encoder, build_model
from clip_fairness_adapter.trainer import common
from clip_fairness_adapter.trainer.evaluate import predict, run_evaluation
from clip_fairness_adapter.trainer.infer import run_inference
from clip_fairness_adapter.trainer.stage2_independent_adapter_trainer import (
    Stage2Objective,
    fair_ramp,
    train,
    train_one_epoch,
)
from common_utils.train import ConfigError, NonFiniteLossError, OptimStep, init_distributed, load_checkpoint
from conftest import tiny_cfg

MONITORED = ["train/loss_total", "train/loss_cls", "train/loss_fair", "train/lambda_fair", "train/gate_mean",
             "train/acc", "val/auc", "val/acc", "val/subgroup_auc_std", "val/sinkhorn_dist", "val/gate_mean"]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stage2_cfg(stage1_run, data_root, clip_run):
    return tiny_cfg(2, data_root, stage1_run.parent / "stage2", f"stage1_checkpoint={stage1_run / 'best.pth'}",
                    "train.epochs=8", clip=clip_run)


@pytest.fixture(scope="module")
def stage2_run(stage2_cfg):
    return train(stage2_cfg)


def test_stage2_trains_and_evaluates_every_kind_of_test_list(stage2_run, stage2_cfg):
    """The tiny pre-trained CLIP of the session data carries demographics but little of the manipulation (a
    standardised linear probe on its features reaches test AUC ~0.62, README "Results"), so detection learning is
    asserted by test_paper_scale on features that carry it; here the fairness term trains and every report forms."""
    rows = read_metrics(stage2_run)
    assert all(k in rows[-1] for k in MONITORED) and len(rows) == 8
    assert all(math.isfinite(r[k]) for r in rows for k in MONITORED)
    assert rows[-1]["train/loss_fair"] < 0.7 * rows[1]["train/loss_fair"], rows  # after the ramp's first epoch
    assert rows[-1]["val/sinkhorn_dist"] < rows[0]["val/sinkhorn_dist_init"], rows
    out = run_evaluation(stage2_cfg)
    res = out["results"]
    assert set(res) == {"test", "test_shifted", "test_shifted_list"}
    assert set(res["test"]) == {"stage2", "linear_probe"}
    test = res["test"]["stage2"]
    with open(f"{stage2_cfg.data.root}/pgfdd/test.csv") as f:
        n_listed = sum(1 for _ in csv.DictReader(f))
    assert 0 <= test["detection"]["auc"] <= 1 and test["detection"]["n"] == n_listed, test
    assert test["detection"]["convention"] == "pgfdd"
    assert set(test["fairness"]) == {"gender", "race", "intersection"}
    assert test["video"]["n"] * 3 == test["detection"]["n"]  # 3 frames per video folder
    # the same shifted test as a list without demographics: detection identical, fairness not applicable
    listed = res["test_shifted_list"]["stage2"]
    assert listed["fairness"] is None and listed["subgroup_auc"] == {} and listed["sinkhorn_dist"] is None
    assert listed["detection"]["auc"] == res["test_shifted"]["stage2"]["detection"]["auc"]
    report = (out["out_dir"] / "report.md").read_text()
    assert "| test_shifted_list | stage2 | n/a (no demographics) |" in report
    assert "| test | stage2 | intersection |" in report
    for f in ("report.json", "roc_test.png", "subgroup_auc_test.png"):
        assert (out["out_dir"] / f).is_file(), f
    export = load_checkpoint(stage2_run / "best.pth")
    assert not any(k.startswith("clip_model.") for k in export["model_state_dict"])


def test_infer_on_a_folder(stage2_run, stage2_cfg, data_root, tmp_path):
    folder = data_root / "images" / "fake_shifted"
    out = run_inference(stage2_cfg, stage2_run / "best.pth", folder, tmp_path / "preds.csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(list(folder.rglob("*.png"))) and set(rows[0]) == {"img_path", "prob_fake", "pred_fake"}
    assert all(0 <= float(r["prob_fake"]) <= 1 and r["pred_fake"] in ("0", "1") for r in rows)


def test_fair_warmup_ramp(data_root, tmp_path):
    off = tiny_cfg(2, data_root, tmp_path, "loss_weighting.fair_warmup_epochs=0")
    assert fair_ramp(off, 0, 0, 5) == 1.0  # 0 epochs: no ramp (the design's behaviour)
    cfg = tiny_cfg(2, data_root, tmp_path, "loss_weighting.fair_warmup_epochs=2")
    ramp = [fair_ramp(cfg, e, i, 5) for e in range(3) for i in range(5)]
    assert ramp[0] == 0.0 and ramp[5] == 0.5 and ramp[9] == 0.9 and ramp[10:] == [1.0] * 5
    assert all(b > a for a, b in zip(ramp[:10], ramp[1:11]))


def test_frozen_unchanged_trainable_changed_after_a_step(stage1_run, data_root, clip_run, tmp_path):
    cfg = tiny_cfg(2, data_root, tmp_path / "r", f"stage1_checkpoint={stage1_run}/best.pth", "data.cache_dir=null",
                   "loss_weighting.type=dynamic", "loss_weighting.fair_warmup_epochs=0", clip=clip_run)
    ctx = init_distributed("cpu")
    encoder = build_encoder(cfg.clip)
    model = build_model(cfg, encoder)
    model.load_stage1_checkpoint(cfg.stage1_checkpoint)
    weighting = build_loss_weighting(cfg.loss_weighting)
    ds = common.build_split(cfg, cfg.data.val_sets, encoder, ctx)
    assert "image" in ds[0]  # the uncached path runs CLIP on images
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(16)), batch_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log_vars = [p.detach().clone() for p in weighting.parameters()]
    params = [p for p in model.parameters() if p.requires_grad] + list(weighting.parameters())
    objective = Stage2Objective(model, build_fair_loss(cfg.loss), weighting, cfg.fusion.gate_prior)
    train_one_epoch(objective, OptimStep(torch.optim.AdamW(params, lr=1e-3), device="cpu"), loader, cfg, ctx, 0)
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("clip_model.", "stage1_adapter."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trainable = [k for k in before if k not in frozen]
    changed = [k for k in trainable if not torch.equal(before[k], after[k])]
    assert set(changed) == set(trainable), set(trainable) - set(changed)
    assert all(not torch.equal(a, b) for a, b in zip(log_vars, weighting.parameters()))


def test_cache_path_equals_uncached_path(stage1_run, data_root, clip_run):
    outs = {}
    for cached in (True, False):
        cfg = tiny_cfg(2, data_root, stage1_run.parent / "cache_cmp", f"stage1_checkpoint={stage1_run}/best.pth",
                       *(() if cached else ("data.cache_dir=null",)), clip=clip_run)
        ctx = init_distributed("cpu")
        encoder = build_encoder(cfg.clip)
        torch.manual_seed(0)  # the same Stage 2 heads for both paths
        model = build_model(cfg, encoder)
        model.load_stage1_checkpoint(cfg.stage1_checkpoint)
        ds = common.build_split(cfg, cfg.data.val_sets, encoder, ctx)
        assert ("clip_feat" in ds[0]) == cached
        outs[cached] = predict(model, common.eval_loader(ds, cfg, ctx), ctx.device)
    torch.testing.assert_close(outs[True]["feat"], outs[False]["feat"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.as_tensor(outs[True]["prob"]), torch.as_tensor(outs[False]["prob"]),
                               rtol=1e-5, atol=1e-6)


def test_config_and_data_errors(data_root, tmp_path, stage1_run):
    with pytest.raises(ConfigError, match="fusion.kvv"):
        tiny_cfg(2, data_root, tmp_path, "fusion.kvv=global")
    with pytest.raises(ConfigError, match="'stage1_checkpoint' cannot be null"):
        tiny_cfg(2, data_root, tmp_path / "r", "stage1_checkpoint=null")
    cfg = tiny_cfg(2, data_root, tmp_path / "nodemo", f"stage1_checkpoint={stage1_run}/best.pth",
                   "data.train_sets=[{format: csv, path: lists/test_shifted.csv}]")
    with pytest.raises(ValueError, match="needs a real/fake label and demographics"):
        train(cfg)
    assert not (tmp_path / "nodemo" / "config.yaml").exists()  # written only after config and data validated


def test_non_finite_loss_stops_with_the_step(stage1_run, data_root, tmp_path, monkeypatch):
    from clip_fairness_adapter.losses import Stage2FairnessLoss

    def nan_loss(self, f, y, s):
        return f.sum() * float("nan"), {"real_pairs": 1, "fake_pairs": 1}

    monkeypatch.setattr(Stage2FairnessLoss, "forward", nan_loss)
    with pytest.raises(NonFiniteLossError, match="batch 1/"):
        train(tiny_cfg(2, data_root, tmp_path / "nan", f"stage1_checkpoint={stage1_run}/best.pth",
                       "loss_weighting.fair_warmup_epochs=0"))
    assert not (tmp_path / "nan" / "last.pth").exists()
