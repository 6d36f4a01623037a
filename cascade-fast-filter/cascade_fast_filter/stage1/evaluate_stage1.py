"""Task 1.3: evaluate the calibrated fast filter overall and per `dataset`, and analyse cascade thresholds.

Writes evaluation_report.json / .md, roc_curve.png (overall + one curve per dataset), and reliability_eval.png and
confidence_histogram.png overall and per dataset (``*_<dataset>.png``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from common_utils.metrics import binary_metrics, ece
from common_utils.plots import plot_group_bars, plot_reliability, plot_roc

from .utils import (
    analyze_cascade_thresholds,
    calibrated_probs,
    load_temperature,
    load_trained_model,
    measure_gflops,
    predict_logits,
    read_score_csv,
    read_split,
    resolve_path,
    to_jsonable,
)


def confidence_histogram(p_fake, labels, n_bins: int) -> dict:
    """Samples per P(fake) interval, split by class."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p_fake, edges[1:-1], right=False), 0, n_bins - 1)
    labels = np.asarray(labels)
    return {"edges": edges.tolist(),
            "real": np.bincount(idx[labels == 0], minlength=n_bins).tolist(),
            "fake": np.bincount(idx[labels == 1], minlength=n_bins).tolist()}


def group_report(labels, logits, temperature, cfg, c1=None, c2=None) -> dict:
    """Metrics of one group of samples: 0.5-threshold metrics, AUC, ECE before/after, histogram, cascade table."""
    p = calibrated_probs(logits, temperature)
    m = binary_metrics(labels, p)
    e = cfg.eval
    return {
        "n": int(len(labels)), "n_fake": int(np.sum(labels == 1)), "n_real": int(np.sum(labels == 0)),
        "auc": m["auc"], "ap": m["ap"], "eer": m["eer"], "accuracy": m["acc"], "f1": m["f1"],
        "confusion_matrix": m["confusion_matrix"],
        "ece_uncalibrated": ece(labels, calibrated_probs(logits, 1.0), n_bins=e.n_bins, scheme=e.ece_scheme)["value"],
        "ece": ece(labels, p, n_bins=e.n_bins, scheme=e.ece_scheme)["value"],
        "confidence_histogram": confidence_histogram(p, labels, cfg.evaluation.hist_bins),
        "cascade": analyze_cascade_thresholds(p, labels, list(cfg.evaluation.thresholds),
                                              cfg.evaluation.settle_rule, c1, c2),
    }


def stage2_cost(cfg):
    """C2 in GFLOPs: cascade.stage2_gflops, else the stage-2 CSV's declared cost_gflops, else None."""
    if cfg.cascade.stage2_gflops is not None:
        return float(cfg.cascade.stage2_gflops)
    if cfg.cascade.stage2_scores:
        return read_score_csv(resolve_path(cfg.cascade.stage2_scores, "."), cfg.data.root)[1]
    return None


def markdown_report(report: dict) -> str:
    """Human-readable summary of evaluation_report.json."""
    lines = [f"# Stage-1 evaluation ({report['split']})", "",
             f"Temperature T = {report['temperature']:.4f}; fast filter cost C1 = {report['c1_gflops']:.4f} GFLOPs "
             f"at {report['input_size']} px; C2 = {report['c2_gflops']} GFLOPs; settle rule `{report['settle_rule']}`.",
             f"ECE: {report['ece_definition']}", "",
             "| group | n | AUC | F1 | acc | ECE (uncal) | ECE (cal) |", "|---|---|---|---|---|---|---|"]
    groups = {"overall": report["overall"], **report["per_dataset"]}
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for name, g in groups.items():
        lines.append(f"| {name} | {g['n']} | {fmt(g['auc'])} | {fmt(g['f1'])} | {fmt(g['accuracy'])} | "
                     f"{fmt(g['ece_uncalibrated'])} | {fmt(g['ece'])} |")
    lines += ["", "## Cascade thresholds (overall)", "",
              "| t | filtration | leakage | settled precision | real specificity | filtration bound | cost (GFLOPs) |",
              "|---|---|---|---|---|---|---|"]
    for t, r in report["overall"]["cascade"].items():
        lines.append(f"| {t} | {fmt(r['filtration_rate'])} | {fmt(r['leakage_rate'])} | "
                     f"{fmt(r['settled_precision'])} | {fmt(r['real_specificity'])} | {fmt(r['filtration_bound'])} | "
                     f"{fmt(r.get('expected_cost_gflops'))} |")
    lines += ["", "Filtration can never exceed real share + leakage x fake share (the bound column): read a "
              "filtration target against the class mix of this split.", ""]
    return "\n".join(lines)


def evaluate(cfg, checkpoint=None, temperature_file=None) -> dict:
    """Evaluate best_model.pth with calibration_temp.json on cfg.evaluation.split; returns the report dict."""
    run_dir = Path(cfg.run_dir)
    model, _ = load_trained_model(checkpoint or run_dir / "best_model.pth", cfg)
    t = load_temperature(temperature_file or run_dir / "calibration_temp.json")
    split = cfg.evaluation.split
    rows = read_split(cfg, split)
    logits = predict_logits(model, rows, cfg)
    labels = np.array([r.label for r in rows])
    datasets = np.array([r.dataset for r in rows])
    c1, c2 = measure_gflops(model, cfg.model.input_size), stage2_cost(cfg)
    ece_def = ece(labels, calibrated_probs(logits, t), n_bins=cfg.eval.n_bins, scheme=cfg.eval.ece_scheme)
    report = {
        "split": split, "temperature": t, "input_size": cfg.model.input_size, "c1_gflops": c1, "c2_gflops": c2,
        "settle_rule": cfg.evaluation.settle_rule, "ece_definition": ece_def["definition"],
        "ece_scheme": ece_def["scheme"], "ece_bins": ece_def["n_bins"],
        "overall": group_report(labels, logits, t, cfg, c1, c2),
        "per_dataset": {d: group_report(labels[datasets == d], logits[datasets == d], t, cfg, c1, c2)
                        for d in sorted(set(datasets))},
    }
    probs = calibrated_probs(logits, t)
    curves = {"overall": (labels, probs)}
    curves.update({d: (labels[datasets == d], probs[datasets == d]) for d in report["per_dataset"]
                   if len(set(labels[datasets == d])) == 2})
    figures = [plot_roc(curves, run_dir / "roc_curve.png", title=f"Stage-1 ROC ({split})")]
    groups = {"overall": np.ones(len(labels), dtype=bool)} | {d: datasets == d for d in report["per_dataset"]}
    for name, mask in groups.items():
        suffix = "" if name == "overall" else f"_{name}"
        hist = (report["overall"] if name == "overall" else report["per_dataset"][name])["confidence_histogram"]
        before_after = {"uncalibrated": calibrated_probs(logits[mask], 1.0), f"T={t:.3f}": probs[mask]}
        figures += [
            plot_reliability(labels[mask], before_after, run_dir / f"reliability_eval{suffix}.png",
                             n_bins=cfg.eval.n_bins, scheme=cfg.eval.ece_scheme,
                             title=f"Reliability ({split}, {name})"),
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
    print(f"{split}: AUC {o['auc']}, F1 {o['f1']}, acc {o['accuracy']}, ECE {o['ece']}")
    return report
