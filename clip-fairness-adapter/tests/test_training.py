"""Tiny end-to-end runs: learning, fairness effect, exact resume, frozen/trainable parameters, cache == no cache."""
import json

import numpy as np
import pytest
import torch
from clip_fairness_adapter.losses import build_loss_weighting
from clip_fairness_adapter.trainer import common
from clip_fairness_adapter.trainer.evaluate import predict, run_evaluation
from clip_fairness_adapter.trainer.stage2_independent_adapter_trainer import (
    build_fair_loss,
    build_model,
    fair_ramp,
    load_trained,
    train,
    train_one_epoch,
)
from common_utils.metrics import binary_metrics
from common_utils.train import ConfigError, load_checkpoint, make_grad_scaler
from conftest import tiny_cfg

MONITORED = ["train/loss_total", "train/loss_cls", "train/loss_fair", "train/lambda_fair", "train/gate_mean",
             "train/acc", "val/auc", "val/acc", "val/subgroup_auc_std", "val/sinkhorn_dist"]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stage2_run(stage1_run, data_root, tmp_path_factory):
    run_dir = stage1_run.parent / "stage2"
    return train(tiny_cfg(2, data_root, run_dir, f"stage1_checkpoint={stage1_run / 'last.pth'}"))


def test_stage2_learns_the_synthetic_task_and_reports(stage2_run, data_root):
    rows = read_metrics(stage2_run)
    assert all(k in rows[-1] for k in MONITORED)
    assert rows[-1]["train/loss_cls"] < rows[0]["train/loss_cls"] - 0.01
    cfg = tiny_cfg(2, data_root, stage2_run, f"stage1_checkpoint={stage2_run.parent / 'stage1'}/last.pth")
    out = run_evaluation(cfg, stage2_run / "last.pth")
    test = out["results"]["test"]
    assert set(test) == {"stage2", "linear_probe"} and set(out["results"]) == {"test", "test_shifted"}
    assert test["stage2"]["detection"]["auc"] > 0.65, test["stage2"]["detection"]
    assert set(test["stage2"]["fairness"]) == {"intersectional", "gender", "race"}
    for f in ("report.json", "report.md", "roc_test.png", "subgroup_auc_test.png"):
        assert (out["out_dir"] / f).is_file(), f
    assert "| test | stage2 | intersectional |" in (out["out_dir"] / "report.md").read_text()
    ckpt = load_checkpoint(stage2_run / "last.pth")
    assert ckpt["epoch"] == len(rows) and set(ckpt["model_state_dict"]) == \
        {k for k in ckpt["model_state_dict"] if not k.startswith("clip_model.")}


def within_class_score_gap(label, prob, subgroup) -> float:
    """Subgroup gap of the detector's output: per class, max - min over subgroups (>= 2 samples) of the mean
    predicted fake probability; mean of the real and fake classes (a soft F_FPR / F_FNR, i.e. equalised odds)."""
    label, prob, subgroup = (np.asarray(a) for a in (label, prob, subgroup))
    gaps = []
    for c in (0, 1):
        means = [prob[(label == c) & (subgroup == g)].mean() for g in np.unique(subgroup[label == c])
                 if ((label == c) & (subgroup == g)).sum() >= 2]
        gaps.append(max(means) - min(means))
    return float(np.mean(gaps))


def test_fairness_loss_reduces_subgroup_gap(stage1_run, data_root):
    """Same data, seed and schedule (tiny config, 16 epochs) with lambda_fair = 0 vs fixed lambda_fair = 0.1 ramped
    in over 6 epochs: on the held-out test split the fairness run keeps detection (AUC > 0.65, both classes
    predicted) and has a smaller within-class subgroup gap of the predicted probability; the validation
    within-class Sinkhorn distance of the fused feature (what the loss minimises) drops too. Measured with seeds 0-3:
    score gap 0.140 -> 0.102, 0.254 -> 0.182, 0.207 -> 0.125, 0.203 -> 0.159 (README); without the ramp,
    lambda_fair = 0.1 collapses to one class. Subgroup AUCs (~4 images per class and subgroup) are too noisy here."""
    res = {}
    for lam, warmup in ((0.0, 0), (0.1, 6)):
        cfg = tiny_cfg(2, data_root, stage1_run.parent / f"fair_{lam}", f"stage1_checkpoint={stage1_run}/last.pth",
                       "loss_weighting.type=fixed", f"loss_weighting.lambda_fair={lam}",
                       f"loss_weighting.fair_warmup_epochs={warmup}")
        run = train(cfg)
        ctx = common.setup(cfg)
        encoder = common.build_encoder(cfg, ctx)
        model = load_trained(cfg, ctx, encoder, run / "last.pth")
        pred = predict(model, common.eval_loader(common.build_split(cfg, cfg.data.test_sets[0].csvs, encoder, ctx),
                                                 cfg, ctx), ctx.device)
        det = binary_metrics(pred["label"], pred["prob"])
        res[lam] = {"auc": det["auc"], "cm": det["confusion_matrix"],
                    "gap": within_class_score_gap(pred["label"], pred["prob"], pred["subgroup"]),
                    "val_sinkhorn": read_metrics(run)[-1]["val/sinkhorn_dist"]}
    for r in res.values():  # both detectors learned the task; neither predicts a single class
        (tn, fp), (fn, tp) = r["cm"]
        assert r["auc"] > 0.65 and tn + fn > 0 and fp + tp > 0, res
    assert res[0.1]["gap"] < 0.85 * res[0.0]["gap"], res
    assert res[0.1]["val_sinkhorn"] < 0.5 * res[0.0]["val_sinkhorn"], res


def test_fair_warmup_ramp(data_root, tmp_path):
    off = tiny_cfg(2, data_root, tmp_path)
    assert fair_ramp(off, 0, 0, 5) == 1.0  # default 0 epochs: no ramp (the design's behaviour)
    cfg = tiny_cfg(2, data_root, tmp_path, "loss_weighting.fair_warmup_epochs=2")
    ramp = [fair_ramp(cfg, e, i, 5) for e in range(3) for i in range(5)]
    assert ramp[0] == 0.0 and ramp[5] == 0.5 and ramp[9] == 0.9 and ramp[10:] == [1.0] * 5
    assert all(b > a for a, b in zip(ramp[:10], ramp[1:11]))


def keep_epoch1_copy(monkeypatch, target_dir):
    """Simulate a crash after epoch 1: copy the epoch-1 ``last.pth`` of the running job into ``target_dir``."""
    import shutil

    save = common.save

    def save_and_copy(state, run_dir, ctx, best=False):
        save(state, run_dir, ctx, best)
        if state["epoch"] == 1:
            target_dir.mkdir(exist_ok=True)
            shutil.copy(run_dir / "last.pth", target_dir / "last.pth")

    monkeypatch.setattr(common, "save", save_and_copy)
    return save


def test_resume_reproduces_the_uninterrupted_run(stage1_run, data_root, monkeypatch):
    base = stage1_run.parent
    args = (f"stage1_checkpoint={stage1_run}/last.pth", "train.epochs=2")
    save = keep_epoch1_copy(monkeypatch, base / "part")
    full = train(tiny_cfg(2, data_root, base / "full", *args))
    monkeypatch.setattr(common, "save", save)
    part = train(tiny_cfg(2, data_root, base / "part", *args), resume="auto")
    a, b = load_checkpoint(full / "last.pth"), load_checkpoint(part / "last.pth")
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["model_state_dict"].items():
        assert torch.equal(v, b["model_state_dict"][k]), k
    for k, v in a["loss_weighting_state_dict"].items():
        assert torch.equal(v, b["loss_weighting_state_dict"][k]), k
    assert read_metrics(full)[-1] == read_metrics(part)[-1]


def test_frozen_unchanged_trainable_changed_after_a_step(stage1_run, data_root, tmp_path):
    cfg = tiny_cfg(2, data_root, tmp_path / "r", f"stage1_checkpoint={stage1_run}/last.pth", "data.cache_dir=null",
                   "loss_weighting.type=dynamic")
    ctx = common.setup(cfg)
    encoder = common.build_encoder(cfg, ctx)
    model = build_model(cfg, encoder)
    model.load_stage1_checkpoint(cfg.stage1_checkpoint)
    weighting = build_loss_weighting(cfg.loss_weighting)
    ds = common.build_split(cfg, cfg.data.val_csvs, encoder, ctx)
    assert "image" in ds[0]  # the uncached path runs CLIP on images
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, range(16)), batch_size=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log_vars = [p.detach().clone() for p in weighting.parameters()]
    params = [p for p in model.parameters() if p.requires_grad] + list(weighting.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    train_one_epoch(model, weighting, build_fair_loss(cfg), loader, optimizer, make_grad_scaler("fp32", "cpu"), cfg,
                    ctx, 0)
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("clip_model.", "stage1_adapter."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trainable = [k for k in before if k not in frozen]
    changed = [k for k in trainable if not torch.equal(before[k], after[k])]
    assert set(changed) == set(trainable), set(trainable) - set(changed)
    assert all(not torch.equal(a, b) for a, b in zip(log_vars, weighting.parameters()))


def test_cache_path_equals_uncached_path(stage1_run, data_root):
    outs = {}
    for cached in (True, False):
        cfg = tiny_cfg(2, data_root, stage1_run.parent / "cache_cmp", f"stage1_checkpoint={stage1_run}/last.pth",
                       *(() if cached else ("data.cache_dir=null",)))
        ctx = common.setup(cfg)
        encoder = common.build_encoder(cfg, ctx)
        model = build_model(cfg, encoder)
        model.load_stage1_checkpoint(cfg.stage1_checkpoint)
        ds = common.build_split(cfg, cfg.data.val_csvs, encoder, ctx)
        assert ("clip_feat" in ds[0]) == cached
        outs[cached] = predict(model, common.eval_loader(ds, cfg), ctx.device)
    torch.testing.assert_close(outs[True]["feat"], outs[False]["feat"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.as_tensor(outs[True]["prob"]), torch.as_tensor(outs[False]["prob"]),
                               rtol=1e-5, atol=1e-6)


def test_config_errors(data_root, tmp_path):
    with pytest.raises(ConfigError, match="fusion.kvv"):
        tiny_cfg(2, data_root, tmp_path, "fusion.kvv=global")
    with pytest.raises(ConfigError, match="'stage1_checkpoint' cannot be null"):
        tiny_cfg(2, data_root, tmp_path / "r", "stage1_checkpoint=null")


def test_stage1_resume_reproduces_the_uninterrupted_run(stage1_run, data_root, monkeypatch):
    from clip_fairness_adapter.trainer import stage1_trainer

    base = stage1_run.parent
    save = keep_epoch1_copy(monkeypatch, base / "s1_part")
    full = stage1_trainer.train(tiny_cfg(1, data_root, base / "s1_full", "train.epochs=2"))
    monkeypatch.setattr(common, "save", save)
    part = stage1_trainer.train(tiny_cfg(1, data_root, base / "s1_part", "train.epochs=2"), resume="auto")
    a, b = load_checkpoint(full / "last.pth"), load_checkpoint(part / "last.pth")
    assert a["epoch"] == b["epoch"] == 2
    assert sorted(a["model_state_dict"]) == [f"additive_adapter.adapter.{i}.{w}" for i in (0, 3, 6)
                                            for w in ("bias", "weight")]
    for k, v in a["model_state_dict"].items():
        assert torch.equal(v, b["model_state_dict"][k]), k


def test_non_finite_loss_stops_with_the_step(stage1_run, data_root, tmp_path, monkeypatch):
    from clip_fairness_adapter.losses import Stage2FairnessLoss
    from common_utils.train import NonFiniteLossError

    monkeypatch.setattr(Stage2FairnessLoss, "forward", lambda self, f, y, s: (f.sum() * float("nan"), {}))
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train(tiny_cfg(2, data_root, tmp_path / "nan", f"stage1_checkpoint={stage1_run}/last.pth"))
    assert not (tmp_path / "nan" / "last.pth").exists()
