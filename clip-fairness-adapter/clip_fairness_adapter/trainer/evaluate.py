"""Evaluation: detection metrics (frame and video level), subgroup fairness (gender, race, intersection), figures,
reports. Metric conventions: ``common_utils.metrics`` with ``eval.convention`` (default ``pgfdd``: PG-FDD's
``acc_fairness``, so F_FPR / F_OAE / F_DP / F_MEO are its 100 x (max - min) gaps, its ``F_FPR_overall`` is our
``F_EFPR`` x 100 and its F_EO our ``F_EO`` x 100) and video-level metrics with ``convention="deepfakebench"`` (frames
grouped by their parent folder, a video's score the mean of its frames' probabilities)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from common_utils.metrics import binary_metrics, fairness_report, video_metrics
from common_utils.plots import plot_group_bars, plot_roc
from common_utils.train import check_finite_outputs, init_distributed, seed_everything

from ..losses import Stage2FairnessLoss, build_fair_loss
from ..model import build_encoder, load_trained
from .common import build_split, eval_loader, gather, to_device

GENDERS = ("male", "female")
RACES = ("asian", "white", "black", "other")
SUBGROUPS = tuple((g, r) for g in GENDERS for r in RACES)  # PG-FDD intersec_label order


@torch.no_grad()
def predict(model, loader, device, epoch: int | None = None) -> dict:
    """label/subgroup/gender/race/index/prob/logit [N] (numpy), feat [N,D] and gate [N] (torch, CPU) over ``loader``.

    ``logit`` is the class-1 logit (PG-FDD's F_COV covers it). In a distributed run ``loader`` is this rank's shard
    (``eval_loader(ds, cfg, ctx)``); every rank gets the whole split's predictions, in order. Non-finite outputs are
    reported as divergence (``epoch`` names when)."""
    model.eval()
    keys = ("label", "subgroup", "gender", "race", "index")
    out = {k: [] for k in (*keys, "prob", "logit", "feat", "gate")}
    for batch in loader:
        pred = model(to_device(batch, device))
        check_finite_outputs(pred["cls"], epoch if epoch is not None else 0, "predicted logits")
        out["prob"].append(pred["prob"].float().cpu())
        out["logit"].append(pred["cls"][:, 1].float().cpu())
        out["feat"].append(pred["feat"].float().cpu())
        out["gate"].append(pred["gate"].float().cpu().squeeze(1))
        for k in keys:
            out[k].append(batch[k])
    res = {k: gather(torch.cat(v), device) for k, v in out.items()}
    return {k: (v.numpy() if k not in ("feat", "gate") else v) for k, v in res.items()}


def fairness(pred: dict, threshold: float, convention: str) -> dict | None:
    """``fairness_report`` by gender, race and their intersection over the rows with known demographics; None when
    the list has none (a test list without demographics)."""
    known = np.asarray(pred["subgroup"]) >= 0
    if not known.any():
        return None
    gender = [GENDERS[g] for g in np.asarray(pred["gender"])[known]]
    race = [RACES[r] for r in np.asarray(pred["race"])[known]]
    return fairness_report(np.asarray(pred["label"])[known], np.asarray(pred["prob"])[known],
                           {"gender": gender, "race": race}, threshold, convention=convention,
                           logits=np.asarray(pred["logit"])[known], orders={"gender": GENDERS, "race": RACES})


def subgroup_aucs(report: dict | None) -> dict:
    """Per-subgroup AUC ('male-asian', ...) of the intersection table (None where a subgroup lacks a class)."""
    if report is None:
        return {}
    groups = report["intersection"]["groups"]
    return {f"{g}-{r}": groups[(g, r)]["auc"] if (g, r) in groups else None for g, r in SUBGROUPS}


def auc_spread(report: dict | None) -> tuple[float | None, float | None]:
    """(std, max - min) of the defined per-subgroup AUCs (None with fewer than two)."""
    aucs = [a for a in subgroup_aucs(report).values() if a is not None]
    if len(aucs) < 2:
        return None, None
    return float(np.std(aucs)), float(max(aucs) - min(aucs))


def sinkhorn_distance(pred: dict, fair_loss: Stage2FairnessLoss, max_samples: int, seed: int = 0) -> float | None:
    """Stage 2 fairness loss on the normalised fused features of (a fixed subset of) a whole split; None when no
    class has two subgroups with known demographics."""
    n = len(pred["label"])
    idx = torch.arange(n)
    if n > max_samples:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_samples].sort().values
    value, info = fair_loss(pred["feat"][idx], torch.as_tensor(pred["label"])[idx],
                            torch.as_tensor(pred["subgroup"])[idx])
    return float(value) if info["real_pairs"] + info["fake_pairs"] else None


def summarize(pred: dict, cfg, fair_loss: Stage2FairnessLoss | None = None, paths: list | None = None) -> dict:
    """Detection metrics, video-level metrics (``paths``: the frames' image paths), fairness report (None without
    demographics), subgroup AUC std / gap, gate mean and the Sinkhorn distance for one split's predictions."""
    e = cfg.eval
    det = binary_metrics(pred["label"], pred["prob"], e.threshold, convention=e.convention)
    video = None
    if e.video_level and paths is not None:
        v = video_metrics(pred["label"], pred["prob"], [str(p) for p in paths], e.threshold,
                          convention="deepfakebench")
        video = {"auc": v["auc"], "ap": v["ap"], "eer": v["eer"], "acc": v["acc"], "n": v["n"]}
    report = fairness(pred, e.threshold, e.convention)
    std, gap = auc_spread(report)
    out = {"detection": det, "video": video, "fairness": report, "subgroup_auc": subgroup_aucs(report),
           "subgroup_auc_std": std, "subgroup_auc_gap": gap}
    if "gate" in pred:
        out["gate_mean"] = float(pred["gate"].mean())
    if fair_loss is not None:
        out["sinkhorn_dist"] = sinkhorn_distance(pred, fair_loss, e.sinkhorn_max_samples)
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {("-".join(k) if isinstance(k, tuple) else str(k)): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def write_report(results: dict[str, dict[str, dict]], out_dir: Path, curves: dict, notes: str = "") -> list[Path]:
    """results[test_set][method] = summarize(...) -> report.json, report.md, roc_<set>.png, subgroup_auc_<set>.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(_jsonable(results), indent=1, default=_fmt))
    lines = ["# Evaluation report", "", notes, "", "## Detection", "",
             "| test set | method | AUC | AP | EER | ACC | video AUC (videos) |", "|---|---|---|---|---|---|---|"]
    for name, methods in results.items():
        for method, r in methods.items():
            d, v = r["detection"], r["video"]
            video = f"{_fmt(v['auc'])} ({v['n']})" if v else "n/a"
            lines.append(f"| {name} | {method} | {_fmt(d['auc'])} | {_fmt(d['ap'])} | {_fmt(d['eer'])} | "
                         f"{_fmt(d['acc'])} | {video} |")
    lines += ["", "## Fairness (F_* gaps x100 as PG-FDD; F_EFPR, F_EO unscaled; AUC gap = max - min)", "",
              "| test set | method | groups | F_FPR | F_OAE | F_DP | F_MEO | F_EFPR | F_EO | AUC gap |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, methods in results.items():
        for method, r in methods.items():
            if r["fairness"] is None:
                lines.append(f"| {name} | {method} | n/a (no demographics) |" + " n/a |" * 7)
                continue
            for kind, t in r["fairness"].items():
                lines.append(f"| {name} | {method} | {kind} | {_fmt(t['F_FPR'])} | {_fmt(t['F_OAE'])} | "
                             f"{_fmt(t['F_DP'])} | {_fmt(t['F_MEO'])} | {_fmt(t['F_EFPR'])} | {_fmt(t['F_EO'])} | "
                             f"{_fmt(t['auc_gap'])} |")
    lines += ["", "## Per-subgroup AUC", ""]
    names = [f"{g}-{r}" for g, r in SUBGROUPS]
    for name, methods in results.items():
        lines += [f"### {name}", "", "| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for method, r in methods.items():
            aucs = r["subgroup_auc"]
            lines.append(f"| {method} | " + " | ".join(_fmt(aucs.get(k)) for k in names) + " |")
        lines.append("")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    figures = []
    for name, methods in results.items():
        figures.append(plot_roc(curves[name], out_dir / f"roc_{name}.png", title=f"ROC: {name}"))
        bars = {m: {g: a for g, a in r["subgroup_auc"].items() if a is not None} for m, r in methods.items()}
        if any(bars.values()):
            figures.append(plot_group_bars(bars, out_dir / f"subgroup_auc_{name}.png",
                                           title=f"Per-subgroup AUC: {name}", ylabel="AUC"))
    return figures


def validate(model, loader, device, cfg, fair_loss: Stage2FairnessLoss, epoch: int) -> dict:
    """Per-epoch validation of a Stage 2 model (detection, fairness, subgroup AUC std, Sinkhorn distance, gate)."""
    return summarize(predict(model, loader, device, epoch), cfg, fair_loss)


def run_evaluation(cfg, checkpoint: str | Path | None = None, out_dir: str | Path | None = None) -> dict:
    """Evaluate a trained Stage 2 model (and the linear-probe baseline) on every ``data.test_sets`` entry.

    Writes report.json / report.md / ROC and per-subgroup AUC figures to ``out_dir`` (default run_dir/eval).
    """
    from .linear_probe import clip_features, fit_linear_probe

    ctx = init_distributed(cfg.device)
    seed_everything(cfg.seed)
    run_dir = Path(cfg.run_dir)
    checkpoint = Path(checkpoint) if checkpoint is not None else run_dir / cfg.eval.checkpoint
    encoder = build_encoder(cfg.clip, ctx.device)
    model = load_trained(cfg, encoder, checkpoint, ctx.device)
    fair_loss = build_fair_loss(cfg.loss)
    probe = None
    if cfg.eval.linear_probe:
        train_ds = build_split(cfg, cfg.data.train_sets, encoder, ctx)
        probe = fit_linear_probe(*clip_features(model, eval_loader(train_ds, cfg, ctx), ctx.device), cfg.seed)
    results, curves = {}, {}
    for test_set in cfg.data.test_sets:
        ds = build_split(cfg, test_set.sets, encoder, ctx)
        paths = [r.img_path for r in ds.rows]
        loader = eval_loader(ds, cfg, ctx)
        pred = predict(model, loader, ctx.device)
        results[test_set.name] = {"stage2": summarize(pred, cfg, fair_loss, paths)}
        curves[test_set.name] = {"stage2": (pred["label"], pred["prob"])}
        if probe is not None:
            feats, _ = clip_features(model, loader, ctx.device)
            probe_pred = {**pred, "prob": probe.predict_proba(feats)[:, 1], "logit": probe.decision_function(feats),
                          "feat": torch.from_numpy(feats)}
            probe_pred.pop("gate")
            results[test_set.name]["linear_probe"] = summarize(probe_pred, cfg, fair_loss, paths)
            curves[test_set.name]["linear_probe"] = (pred["label"], probe_pred["prob"])
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "eval"
    figures = []
    if ctx.is_main:
        notes = (f"checkpoint: {checkpoint}; fusion.kv={cfg.fusion.kv}; metrics: common_utils.metrics convention "
                 f"'{cfg.eval.convention}', video level 'deepfakebench'; sinkhorn_dist = Stage 2 fairness loss on the "
                 f"normalised fused feature (linear probe: on the CLIP feature)")
        figures = write_report(results, out_dir, curves, notes)
    return {"results": results, "figures": figures, "out_dir": out_dir}
