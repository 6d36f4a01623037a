"""Task 1.3: evaluate the calibrated fast filter overall and per `dataset`, analyse cascade thresholds, and on video
data (a manifest with a ``video`` column) the same at video level.

Writes evaluation_report.json / .md, roc_curve.png (overall + one curve per dataset), reliability_eval.png and
confidence_histogram.png overall and per dataset (``*_<dataset>.png``). Prints the video-level table on video data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from common_utils.metrics import binary_metrics, ece
from common_utils.plots import plot_group_bars, plot_reliability, plot_roc

from ..config import local_context
from ..costs import pair, stage1_costs, stage2_costs
from ..reporting import fmt, markdown_table, to_jsonable
from ..video import video_groups, video_report, video_table
from .calibration import calibrated_probs, load_temperature
from .data import has_videos, read_split
from .model import eval_size, load_trained_model, predict_logits
from .thresholds import analyze_cascade_thresholds


def confidence_histogram(p_fake, labels, n_bins: int) -> dict:
    """Samples per P(fake) interval, split by class."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p_fake, edges[1:-1], right=False), 0, n_bins - 1)
    labels = np.asarray(labels)
    return {"edges": edges.tolist(),
            "real": np.bincount(idx[labels == 0], minlength=n_bins).tolist(),
            "fake": np.bincount(idx[labels == 1], minlength=n_bins).tolist()}


def group_report(labels, logits, temperature, cfg, costs=None) -> dict:
    """Metrics of one group of frames: 0.5-threshold metrics, AUC, ECE before/after, histogram, cascade table."""
    p = calibrated_probs(logits, temperature)
    e = cfg.eval
    m = binary_metrics(labels, p, convention=e.convention)
    ece_of = lambda probs: ece(labels, probs, n_bins=e.n_bins, scheme=e.ece_scheme, convention=e.convention)["value"]  # noqa: E731
    return {
        "n": int(len(labels)), "n_fake": int(np.sum(labels == 1)), "n_real": int(np.sum(labels == 0)),
        "auc": m["auc"], "ap": m["ap"], "eer": m["eer"], "accuracy": m["acc"], "f1": m["f1"],
        "confusion_matrix": m["confusion_matrix"],
        "ece_uncalibrated": ece_of(calibrated_probs(logits, 1.0)), "ece": ece_of(p),
        "confidence_histogram": confidence_histogram(p, labels, cfg.evaluation.hist_bins),
        "cascade": analyze_cascade_thresholds(p, labels, list(cfg.evaluation.thresholds),
                                              cfg.evaluation.settle_rule, costs),
    }


def markdown_report(report: dict) -> str:
    """Human-readable summary of evaluation_report.json."""
    c1, c2 = report["costs"]["stage1"], report["costs"]["stage2"]
    lines = [f"# Stage-1 evaluation ({report['split']})", "",
             f"Temperature T = {report['temperature']:.4f}; metric convention `{report['convention']}`; settle rule "
             f"`{report['settle_rule']}`.",
             f"Cost per frame: stage 1 {fmt(c1['gflops'])} GFLOPs / {fmt(c1['ms'])} ms at {report['input_size']} px "
             f"(batch {report['costs']['batch_size']}, {report['costs']['device']}); stage 2 {fmt(c2['gflops'])} "
             f"GFLOPs / {fmt(c2['ms'])} ms.",
             f"ECE: {report['ece_definition']}", ""]
    groups = {"overall": report["overall"], **report["per_dataset"]}
    lines += markdown_table(["group", "frames", "AUC", "EER", "F1", "acc", "ECE (uncal)", "ECE (cal)"],
                            [[name, g["n"], g["auc"], g["eer"], g["f1"], g["accuracy"], g["ece_uncalibrated"],
                              g["ece"]] for name, g in groups.items()])
    units = report["cost_units"]
    lines += ["", "## Cascade thresholds (frames, overall)", ""]
    lines += markdown_table(
        ["t", "filtration", "leakage", "settled precision", "real specificity", "filtration bound",
         *[f"cost ({u})" for u in units]],
        [[t, r["filtration_rate"], r["leakage_rate"], r["settled_precision"], r["real_specificity"],
          r["filtration_bound"], *[r[f"expected_cost_{u}"] for u in units]]
         for t, r in report["overall"]["cascade"].items()])
    lines += ["", "Filtration can never exceed real share + leakage x fake share (the bound column): read a "
              "filtration target against the class mix of this split.", ""]
    if report.get("video"):
        lines += ["## Video level", ""] + video_table(report["video"]) + [""]
    return "\n".join(lines)


def evaluate(cfg, checkpoint=None, temperature_file=None) -> dict:
    """Evaluate best_model.pth with calibration_temp.json on cfg.evaluation.split; returns the report dict."""
    run_dir = Path(cfg.run_dir)
    model, _ = load_trained_model(checkpoint or run_dir / "best_model.pth", cfg)
    t = load_temperature(temperature_file or run_dir / "calibration_temp.json")
    split, e = cfg.evaluation.split, cfg.eval
    rows = read_split(cfg, split)
    logits = predict_logits(model, rows, cfg)
    labels = np.array([r.label for r in rows])
    datasets = np.array([r.dataset for r in rows])
    c1, c2 = stage1_costs(cfg, model), stage2_costs(cfg)
    costs = pair(c1, c2)
    definition = ece(labels, calibrated_probs(logits, t), n_bins=e.n_bins, scheme=e.ece_scheme,
                     convention=e.convention)
    report = {
        "split": split, "temperature": t, "input_size": eval_size(cfg.model), "convention": e.convention,
        "costs": {"stage1": c1, "stage2": c2, "batch_size": e.batch_size,
                  "device": str(local_context(cfg.device).device)},
        "cost_units": list(costs), "settle_rule": cfg.evaluation.settle_rule,
        "ece_definition": definition["definition"], "ece_scheme": definition["scheme"],
        "ece_bins": definition["n_bins"],
        "overall": group_report(labels, logits, t, cfg, costs),
        "per_dataset": {d: group_report(labels[datasets == d], logits[datasets == d], t, cfg, costs)
                        for d in sorted(set(datasets))},
        "video": video_report(labels, logits, t, video_groups(rows, e.convention), cfg, costs)
        if has_videos(rows) else None,
    }
    probs = calibrated_probs(logits, t)
    curves = {"overall": (labels, probs)}
    curves.update({d: (labels[datasets == d], probs[datasets == d]) for d in report["per_dataset"]
                   if len(set(labels[datasets == d])) == 2})
    figures = [plot_roc(curves, run_dir / "roc_curve.png", title=f"Stage-1 ROC ({split})")]
    groups = {"overall": np.ones(len(labels), dtype=bool)}
    if len(report["per_dataset"]) > 1:  # one dataset's figures would repeat the overall ones
        groups |= {d: datasets == d for d in report["per_dataset"]}
    for name, mask in groups.items():
        suffix = "" if name == "overall" else f"_{name}"
        hist = (report["overall"] if name == "overall" else report["per_dataset"][name])["confidence_histogram"]
        before_after = {"uncalibrated": calibrated_probs(logits[mask], 1.0), f"T={t:.3f}": probs[mask]}
        figures += [
            plot_reliability(labels[mask], before_after, run_dir / f"reliability_eval{suffix}.png",
                             n_bins=e.n_bins, scheme=e.ece_scheme, title=f"Reliability ({split}, {name})"),
            plot_group_bars({cls: {f"{lo:.1f}-{hi:.1f}": float(c) for lo, hi, c in zip(
                hist["edges"][:-1], hist["edges"][1:], hist[cls])} for cls in ("real", "fake")},
                run_dir / f"confidence_histogram{suffix}.png",
                title=f"Samples per calibrated P(fake) interval ({split}, {name})", ylabel="samples"),
        ]
    report["figures"] = [Path(f).name for f in figures]
    report = to_jsonable(report)
    (run_dir / "evaluation_report.json").write_text(json.dumps(report, indent=2))
    (run_dir / "evaluation_report.md").write_text(markdown_report(report))
    o = report["overall"]
    print(f"{split} (frames): AUC {fmt(o['auc'])}, EER {fmt(o['eer'])}, F1 {fmt(o['f1'])}, acc {fmt(o['accuracy'])}, "
          f"ECE {fmt(o['ece_uncalibrated'])} -> {fmt(o['ece'])}")
    if report["video"]:
        print(f"\n{split} (videos, convention {e.convention}):")
        print("\n".join(video_table(report["video"])))
    return report
