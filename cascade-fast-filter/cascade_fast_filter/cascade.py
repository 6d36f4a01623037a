"""Two-stage cascade: the calibrated fast filter settles confident reals, the rest go to a stage-2 detector.

Stage-2 scores come from a CSV (`image_path,score[,cost_gflops]`, any detector). Final score of a sample:
stage-1 P(fake) when stage 1 settles it as real (P(real) >= t), else the stage-2 score. Sweeping t gives the
standard cascade trade-off curve: AUC / accuracy against average cost per sample C1 + (1 - filtration) C2.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from common_utils.data import DataFormatError  # noqa: E402
from common_utils.metrics import binary_metrics  # noqa: E402

from .stage1.utils import (  # noqa: E402
    calibrated_probs,
    expected_cost,
    load_temperature,
    load_trained_model,
    measure_gflops,
    predict_logits,
    read_score_csv,
    read_split,
    settled_mask,
    to_jsonable,
)


def cascade_point(p1, s2, labels, threshold, rule, c1, c2) -> dict:
    """Metrics of the cascade at one threshold. p1: stage-1 calibrated P(fake) [N]; s2: stage-2 scores [N]."""
    settled = settled_mask(p1, threshold, rule)
    final = np.where(settled, p1, s2)
    m = binary_metrics(labels, final)
    n_fake = int(np.sum(labels == 1))
    filtration = float(settled.mean())
    return {"threshold": float(threshold), "auc": m["auc"], "accuracy": m["acc"], "f1": m["f1"],
            "filtration_rate": filtration,
            "leakage_rate": float((settled & (labels == 1)).sum() / n_fake) if n_fake else None,
            "avg_cost_gflops": expected_cost(c1, c2, filtration)}


def choose_operating_point(points: list[dict], max_leakage: float):
    """Cheapest sweep point with leakage <= max_leakage (ties: higher AUC); None when none qualifies."""
    ok = [p for p in points if p["leakage_rate"] is not None and p["leakage_rate"] <= max_leakage]
    if not ok:
        return None
    return min(ok, key=lambda p: (p["avg_cost_gflops"], -(p["auc"] or 0.0)))


def plot_tradeoff(points, refs, chosen, path) -> Path:
    """AUC and accuracy against average cost per sample, one marker per threshold, references for each stage."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    cost = [p["avg_cost_gflops"] for p in points]
    for ax, key, name in ((axes[0], "auc", "AUC"), (axes[1], "accuracy", "accuracy @0.5")):
        ax.plot(cost, [p[key] for p in points], "o-", label="cascade sweep")
        for p in points:
            ax.annotate(f"{p['threshold']:g}", (p["avg_cost_gflops"], p[key]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        for ref_name, ref in refs.items():
            ax.scatter([ref["avg_cost_gflops"]], [ref[key]], marker="s", label=ref_name, zorder=3)
        if chosen is not None:
            ax.scatter([chosen["avg_cost_gflops"]], [chosen[key]], s=150, facecolors="none", edgecolors="red",
                       label=f"chosen t={chosen['threshold']:g}", zorder=4)
        ax.set_xlabel("average cost per sample (GFLOPs)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Cascade trade-off: stage-1 settles P(real) >= t, rest go to stage 2")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_cascade(cfg, checkpoint=None, temperature_file=None, stage2_csv=None) -> dict:
    """Sweep cfg.cascade.sweep thresholds on cfg.cascade.split; writes cascade_report.json, cascade_tradeoff.png
    and cascade_predictions.csv (at the chosen operating point) into the run dir."""
    run_dir = Path(cfg.run_dir)
    stage2_csv = stage2_csv or cfg.cascade.stage2_scores
    if not stage2_csv:
        raise ValueError("no stage-2 scores: set cascade.stage2_scores or pass --stage2-scores")
    model, _ = load_trained_model(checkpoint or run_dir / "best_model.pth", cfg)
    t_cal = load_temperature(temperature_file or run_dir / "calibration_temp.json")
    rows = read_split(cfg, cfg.cascade.split)
    scores, declared = read_score_csv(stage2_csv, cfg.data.root)
    missing = [r for r in rows if str(Path(r.image_path).resolve()) not in scores]
    if missing:
        raise DataFormatError(stage2_csv, f"no score for {len(missing)} {cfg.cascade.split} image(s), e.g. "
                              f"{missing[0].image_path} (manifest line {missing[0].line})")
    c1 = measure_gflops(model, cfg.model.input_size)
    c2 = float(cfg.cascade.stage2_gflops) if cfg.cascade.stage2_gflops is not None else declared
    if c2 is None:
        raise ValueError(f"stage-2 cost unknown: set cascade.stage2_gflops or add cost_gflops to {stage2_csv}")
    labels = np.array([r.label for r in rows])
    p1 = calibrated_probs(predict_logits(model, rows, cfg), t_cal)
    s2 = np.array([scores[str(Path(r.image_path).resolve())] for r in rows])
    rule = cfg.evaluation.settle_rule
    points = [cascade_point(p1, s2, labels, t, rule, c1, c2) for t in cfg.cascade.sweep]
    refs = {}
    for name, score, cost in (("stage 1 only", p1, c1), ("stage 2 only", s2, c2)):
        m = binary_metrics(labels, score)
        refs[name] = {"auc": m["auc"], "accuracy": m["acc"], "f1": m["f1"], "avg_cost_gflops": cost}
    chosen = choose_operating_point(points, cfg.cascade.max_leakage)
    report = to_jsonable({"split": cfg.cascade.split, "temperature": t_cal, "settle_rule": rule,
                          "c1_gflops": c1, "c2_gflops": c2, "stage2_scores": str(stage2_csv),
                          "max_leakage": cfg.cascade.max_leakage, "sweep": points, "references": refs,
                          "operating_point": chosen})
    run_dir.mkdir(parents=True, exist_ok=True)
    plot_tradeoff(points, refs, chosen, run_dir / "cascade_tradeoff.png")
    t_op = chosen["threshold"] if chosen else None
    with open(run_dir / "cascade_predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_path", "label", "p_stage1", "score_stage2", "settled", "final_score"])
        settled = settled_mask(p1, t_op, rule) if chosen else np.zeros(len(rows), bool)
        for r, y, a, b, s in zip(rows, labels, p1, s2, settled):
            writer.writerow([r.image_path, int(y), f"{a:.6f}", f"{b:.6f}", int(s), f"{(a if s else b):.6f}"])
    (run_dir / "cascade_report.json").write_text(json.dumps(report, indent=2))
    if chosen:
        print(f"operating point t={t_op:g}: AUC {chosen['auc']:.4f}, filtration {chosen['filtration_rate']:.3f}, "
              f"leakage {chosen['leakage_rate']:.3f}, cost {chosen['avg_cost_gflops']:.4f} GFLOPs "
              f"(stage 2 alone {c2:.4f})")
    else:
        print(f"no threshold keeps leakage <= {cfg.cascade.max_leakage}")
    return report

