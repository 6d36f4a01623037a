"""Where the demo's real/fake signal is along the Stage 2 path, and how strong it must be for Stage 2 to fit it.

``python script/stage2_signal.py --demo DEMO_OUT [key=value ...] [--shift 0 0.01 0.02]`` reads a finished demo run
(``DEMO_OUT/stage2/config.yaml``, its feature cache and Stage 1 export) and prints one JSON line per shift:
- ``probe``: for every tensor the untrained Stage 2 model computes (CLIP feature, Stage 1 / Stage 2 features, fusion
  intermediates, ``feat`` = the classifier input), an unregularised logistic regression run to convergence (train and
  val AUC, standardised) and the class-mean distance relative to the total spread (‖μ_fake − μ_real‖ / ‖σ‖, σ the
  per-dimension standard deviations);
- ``train``: the epochs of the run's Stage 2 objective, optimiser, schedule and balanced sampler on those features
  (``loss_cls``, train accuracy, train/val AUC of the model, mean pairwise cosine of ``feat``).
``--shift a`` adds ``a · mean‖clip_feat‖`` along one fixed random direction to the fakes' raw CLIP feature and tokens
(0: the demo's features as they are), which sweeps the strength of a signal every probe separates.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from clip_fairness_adapter.__main__ import load
from clip_fairness_adapter.losses import build_fair_loss, build_loss_weighting
from clip_fairness_adapter.model import build_encoder, build_model
from clip_fairness_adapter.trainer.common import build_split
from clip_fairness_adapter.trainer.stage2_independent_adapter_trainer import (
    Stage2Objective,
    build_scheduler,
    fair_ramp,
)
from common_utils.data import SubgroupBalancedBatchSampler
from common_utils.train import (
    OptimStep,
    adamw,
    init_distributed,
    parse_args_with_overrides,
    seed_everything,
    step_options,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

PATH = ("clip_features", "stage1_features", "stage2_features", "fusion_attn_out", "fusion_norm1_out",
        "fusion_norm2_out", "fused_features", "feat")


def split_tensors(cfg, entries, encoder, ctx) -> dict[str, torch.Tensor]:
    """The whole split as one batch of cached features: clip_feat [N,D], clip_tokens [N,K,D], label, subgroup [N]."""
    ds = build_split(cfg, entries, encoder, ctx)
    return {"clip_feat": ds.features[:, 0].float(), "clip_tokens": ds.features[:, 1:].float(),
            "label": torch.tensor([r.label for r in ds.rows]), "subgroup": torch.tensor([r.subgroup for r in ds.rows])}


def add_shift(batch: dict, shift: float, direction: torch.Tensor, scale: float) -> dict:
    out = dict(batch)
    s = shift * scale * batch["label"].float()[:, None]  # [N,1]: fakes only
    out["clip_feat"] = batch["clip_feat"] + s * direction
    out["clip_tokens"] = batch["clip_tokens"] + s[:, None] * direction
    return out


def probe(x: torch.Tensor, y: np.ndarray, xv: torch.Tensor, yv: np.ndarray) -> dict:
    """Converged, (nearly) unregularised logistic regression on standardised x; class-mean distance / spread."""
    scaler = StandardScaler().fit(x.double().numpy())
    a, b = scaler.transform(x.double().numpy()), scaler.transform(xv.double().numpy())
    clf = LogisticRegression(C=1e4, max_iter=5000).fit(a, y)
    sep = (x[y == 1].mean(0) - x[y == 0].mean(0)).norm() / x.std(0).norm()
    return {"train_auc": round(roc_auc_score(y, clf.decision_function(a)), 3),
            "val_auc": round(roc_auc_score(yv, clf.decision_function(b)), 3), "separation": round(float(sep), 4)}


def flat(t: torch.Tensor) -> torch.Tensor:
    """[N,1,D] fusion intermediates -> [N,D]."""
    return t[:, 0] if t.dim() == 3 else t


def mean_cos(x: torch.Tensor) -> float:
    n = torch.nn.functional.normalize(x, dim=1)
    c = n @ n.T
    return float(c[~torch.eye(len(x), dtype=torch.bool)].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", required=True, help="a demo's DEMO_OUT (stage2/config.yaml, cache, stage1/best.pth)")
    p.add_argument("--shift", type=float, nargs="+", default=[0.0])
    args = parse_args_with_overrides(p)
    torch.set_num_threads(1)
    cfg = load("train_stage2", f"{args.demo}/stage2/config.yaml", args.overrides)
    ctx = init_distributed("cpu")
    encoder = build_encoder(cfg.clip, ctx.device)
    train0, val0 = (split_tensors(cfg, s, encoder, ctx) for s in (cfg.data.train_sets, cfg.data.val_sets))
    dim = train0["clip_feat"].shape[1]
    direction = torch.nn.functional.normalize(torch.randn(dim, generator=torch.Generator().manual_seed(123)), dim=0)
    scale = float(train0["clip_feat"].norm(dim=1).mean())
    for shift in args.shift:
        tr, va = add_shift(train0, shift, direction, scale), add_shift(val0, shift, direction, scale)
        y, yv = tr["label"].numpy(), va["label"].numpy()
        seed_everything(cfg.seed)
        model = build_model(cfg, encoder)
        model.load_stage1_checkpoint(cfg.stage1_checkpoint)
        model.eval()
        with torch.no_grad():
            o, ov = model(tr), model(va)
        probes = {k: probe(flat(o[k]), y, flat(ov[k]), yv) for k in PATH}
        weighting, fair_loss = build_loss_weighting(cfg.loss_weighting), build_fair_loss(cfg.loss)
        objective = Stage2Objective(model, fair_loss, weighting, cfg.fusion.gate_prior)
        t = cfg.train
        optimizer = adamw([q for q in model.heads().parameters() if q.requires_grad] + list(weighting.parameters()),
                          lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
        scheduler = build_scheduler(optimizer, t)
        step = OptimStep(optimizer, device="cpu", model=objective, **step_options(t))
        sampler = SubgroupBalancedBatchSampler((tr["label"] * cfg.loss.num_subgroups + tr["subgroup"]).tolist(),
                                               t.batch_size, seed=cfg.seed)
        epochs = []  # the trainer's per-epoch loop (train_one_epoch) on in-memory batches of the same sampler
        for epoch in range(t.epochs):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            objective.train()
            step.begin_epoch(epoch, len(batches))
            ce = acc = 0.0
            for i, idx in enumerate(batches):
                batch = {k: v[idx] for k, v in tr.items()}
                out, losses = objective(batch, fair_ramp(cfg, epoch, i, len(batches)))
                step(losses["loss_total"])
                ce += losses["loss_cls"].item() / len(batches)
                acc += float((out["cls"].argmax(1) == batch["label"]).float().mean()) / len(batches)
            scheduler.step()
            model.eval()
            with torch.no_grad():
                o, ov = model(tr), model(va)
            epochs.append({"epoch": epoch + 1, "loss_cls": round(ce, 4), "acc": round(acc, 3),
                           "train_auc": round(roc_auc_score(y, o["prob"]), 3),
                           "val_auc": round(roc_auc_score(yv, ov["prob"]), 3),
                           "feat_cos": round(mean_cos(o["feat"]), 3)})
        print(json.dumps({"shift": shift, "overrides": args.overrides, "probe": probes, "train": epochs}), flush=True)


if __name__ == "__main__":
    main()
