"""Evaluation: detection metrics, subgroup fairness tables (intersectional, gender, race), figures, reports."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from common_utils.data import SUBGROUP_NAMES
from common_utils.metrics import binary_metrics, fairness_metrics
from common_utils.plots import plot_group_bars, plot_roc

from ..losses import Stage2FairnessLoss
from .common import gather, to_device

GENDERS = ("male", "female")
RACES = ("asian", "white", "black", "other")


@torch.no_grad()
def predict(model, loader, device) -> dict[str, np.ndarray | torch.Tensor]:
    """prob/label/subgroup/gender/race [N] (numpy), feat [N,768] and gate [N] (torch, CPU) over ``loader``.

    In a distributed run ``loader`` is this rank's shard (``eval_loader(ds, cfg, ctx)``); every rank gets the whole
    split's predictions, in order."""
    model.eval()
    keys = ("label", "subgroup", "gender", "race")
    out = {k: [] for k in (*keys, "prob", "feat", "gate")}
    for batch in loader:
        pred = model(to_device(batch, device))
        out["prob"].append(pred["prob"].float().cpu())
        out["feat"].append(pred["feat"].float().cpu())
        out["gate"].append(pred["gate"].float().cpu().squeeze(1))
        for k in keys:
            out[k].append(batch[k])
    res = {k: gather(torch.cat(v), device) for k, v in out.items()}
    return {k: (v.numpy() if k not in ("feat", "gate") else v) for k, v in res.items()}


def fairness_tables(labels, probs, subgroups, genders, races, threshold: float) -> dict:
    """fairness_metrics for intersectional, gender and race groups (group keys are names)."""
    return {
        "intersectional": fairness_metrics(labels, probs, [SUBGROUP_NAMES[g] for g in subgroups], threshold),
        "gender": fairness_metrics(labels, probs, [GENDERS[g] for g in genders], threshold),
        "race": fairness_metrics(labels, probs, [RACES[r] for r in races], threshold),
    }


def subgroup_auc_std(table: dict) -> float | None:
    aucs = [g["auc"] for g in table["groups"].values() if g["auc"] is not None]
    return float(np.std(aucs)) if len(aucs) >= 2 else None


def sinkhorn_distance(pred: dict, fair_loss: Stage2FairnessLoss, max_samples: int, seed: int = 0) -> float:
    """Stage 2 fairness loss on the normalised fused features of (a fixed subset of) a whole split."""
    n = len(pred["label"])
    idx = torch.arange(n)
    if n > max_samples:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_samples].sort().values
    value, _ = fair_loss(pred["feat"][idx], torch.as_tensor(pred["label"])[idx],
                         torch.as_tensor(pred["subgroup"])[idx])
    return float(value)


def summarize(pred: dict, threshold: float, fair_loss: Stage2FairnessLoss | None = None,
              max_samples: int = 2000) -> dict:
    """Detection metrics + fairness tables (+ val monitoring values) for one split's predictions."""
    det = binary_metrics(pred["label"], pred["prob"], threshold)
    fair = fairness_tables(pred["label"], pred["prob"], pred["subgroup"], pred["gender"], pred["race"], threshold)
    out = {"detection": det, "fairness": fair, "subgroup_auc_std": subgroup_auc_std(fair["intersectional"])}
    if "gate" in pred:
        out["gate_mean"] = float(pred["gate"].mean())
    if fair_loss is not None:
        out["sinkhorn_dist"] = sinkhorn_distance(pred, fair_loss, max_samples)
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_report(results: dict[str, dict[str, dict]], out_dir: Path, curves: dict, notes: str = "") -> list[Path]:
    """results[test_set][method] = summarize(...) -> report.json, report.md, roc_<set>.png, subgroup_auc_<set>.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(results, indent=1, default=_fmt))
    lines = ["# Evaluation report", "", notes, "", "## Detection", "",
             "| test set | method | AUC | AP | EER | ACC |", "|---|---|---|---|---|---|"]
    for name, methods in results.items():
        for method, r in methods.items():
            d = r["detection"]
            lines.append(f"| {name} | {method} | {_fmt(d['auc'])} | {_fmt(d['ap'])} | {_fmt(d['eer'])} | "
                         f"{_fmt(d['acc'])} |")
    lines += ["", "## Fairness (gaps x100; AUC gap unscaled)", "",
              "| test set | method | groups | F_FPR | F_OAE | F_DP | F_MEO | AUC gap |",
              "|---|---|---|---|---|---|---|---|"]
    for name, methods in results.items():
        for method, r in methods.items():
            for kind, t in r["fairness"].items():
                lines.append(f"| {name} | {method} | {kind} | {_fmt(t['F_FPR'])} | {_fmt(t['F_OAE'])} | "
                             f"{_fmt(t['F_DP'])} | {_fmt(t['F_MEO'])} | {_fmt(t['auc_gap'])} |")
    lines += ["", "## Per-subgroup AUC", ""]
    for name, methods in results.items():
        first = next(iter(methods.values()))
        groups = list(first["fairness"]["intersectional"]["groups"])
        lines += [f"### {name}", "", "| method | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
        for method, r in methods.items():
            g = r["fairness"]["intersectional"]["groups"]
            lines.append(f"| {method} | " + " | ".join(_fmt(g[k]["auc"]) for k in groups) + " |")
        lines.append("")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    figures = []
    for name, methods in results.items():
        figures.append(plot_roc(curves[name], out_dir / f"roc_{name}.png", title=f"ROC: {name}"))
        bars = {m: {g: v["auc"] for g, v in r["fairness"]["intersectional"]["groups"].items()}
                for m, r in methods.items()}
        figures.append(plot_group_bars(bars, out_dir / f"subgroup_auc_{name}.png", title=f"Per-subgroup AUC: {name}",
                                       ylabel="AUC"))
    return figures


def validate(model, loader, device, cfg, fair_loss: Stage2FairnessLoss) -> dict:
    """Per-epoch validation of a Stage 2 model (auc, acc, subgroup_auc_std, sinkhorn_dist, gate_mean, ...)."""
    pred = predict(model, loader, device)
    return summarize(pred, cfg.eval.threshold, fair_loss, cfg.eval.sinkhorn_max_samples)


def run_evaluation(cfg, checkpoint: str | Path | None = None, out_dir: str | Path | None = None) -> dict:
    """Evaluate a trained Stage 2 model (and the linear-probe baseline) on every ``data.test_sets`` entry.

    Writes report.json / report.md / ROC and per-subgroup AUC figures to ``out_dir`` (default run_dir/eval).
    """
    from . import common
    from .linear_probe import clip_features, fit_linear_probe
    from .stage2_independent_adapter_trainer import build_fair_loss, load_trained

    ctx = common.setup(cfg)
    run_dir = Path(cfg.run_dir)
    encoder = common.build_encoder(cfg, ctx)
    model = load_trained(cfg, ctx, encoder, checkpoint or run_dir / cfg.eval.checkpoint)
    fair_loss = build_fair_loss(cfg)
    probe = None
    if cfg.eval.linear_probe:
        train_ds = common.build_split(cfg, cfg.data.train_csvs, encoder, ctx)
        probe = fit_linear_probe(*clip_features(model, common.eval_loader(train_ds, cfg, ctx), ctx.device), cfg.seed)
    results, curves = {}, {}
    for test_set in cfg.data.test_sets:
        loader = common.eval_loader(common.build_split(cfg, test_set.csvs, encoder, ctx), cfg, ctx)
        pred = predict(model, loader, ctx.device)
        results[test_set.name] = {"stage2": summarize(pred, cfg.eval.threshold, fair_loss,
                                                      cfg.eval.sinkhorn_max_samples)}
        curves[test_set.name] = {"stage2": (pred["label"], pred["prob"])}
        if probe is not None:
            feats, _ = clip_features(model, loader, ctx.device)
            probe_pred = {**pred, "prob": probe.predict_proba(feats)[:, 1]}
            probe_pred.pop("gate")
            probe_pred["feat"] = torch.from_numpy(feats)
            results[test_set.name]["linear_probe"] = summarize(probe_pred, cfg.eval.threshold, fair_loss,
                                                               cfg.eval.sinkhorn_max_samples)
            curves[test_set.name]["linear_probe"] = (pred["label"], probe_pred["prob"])
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "eval"
    figures = []
    if ctx.is_main:
        notes = (f"checkpoint: {checkpoint or run_dir / cfg.eval.checkpoint}; fusion.kv={cfg.fusion.kv}; "
                 f"sinkhorn_dist = Stage 2 fairness loss on the normalised fused feature (linear probe: on the CLIP "
                 f"feature)")
        figures = write_report(results, out_dir, curves, notes)
    return {"results": results, "figures": figures, "out_dir": out_dir}
