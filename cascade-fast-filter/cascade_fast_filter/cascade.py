"""Two-stage cascade: the calibrated fast filter settles confident reals, the rest go to a stage-2 detector.

Stage-2 scores come from a CSV (``scores.py``; any detector). Final score of a sample: stage-1 P(fake) when stage 1
settles it as real (P(real) >= t), else the stage-2 score. Sweeping t gives the standard cascade trade-off: AUC /
accuracy against the average cost per frame C1 + (1 - filtration) C2, in GFLOPs and in ms. The operating point is the
cheapest t (in GFLOPs) whose leakage, as its ``cascade.leakage_confidence`` upper bound, is <= ``cascade.max_leakage``
and AUC >= stage 2's AUC - ``cascade.max_auc_drop``,
chosen on ``cascade.select_split`` and reported on ``cascade.split``. On video data the same runs at video level:
a video is settled when its aggregated P(real) >= t (``evaluation.video_aggregate``), and stage 2 then scores none of
its frames; stage 2's video score is the mean of its frames' scores.
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
from common_utils.metrics import binary_metrics, video_metrics  # noqa: E402
from scipy.stats import beta  # noqa: E402

from .config import local_context  # noqa: E402
from .costs import pair, stage1_costs, stage2_costs  # noqa: E402
from .reporting import to_jsonable  # noqa: E402
from .scores import read_score_csv  # noqa: E402
from .stage1.calibration import calibrated_probs, load_temperature  # noqa: E402
from .stage1.data import has_videos, read_split  # noqa: E402
from .stage1.model import load_trained_model, predict_logits  # noqa: E402
from .stage1.thresholds import expected_cost, settled_mask  # noqa: E402
from .video import aggregate, video_groups  # noqa: E402


def cascade_point(p1, s2, labels, threshold, rule, costs, weights=None, convention="ours") -> dict:
    """Metrics of the cascade at one threshold. p1: stage-1 calibrated P(fake) [N]; s2: stage-2 scores [N];
    costs: {unit: (C1, C2)} per frame; weights: frames per sample (videos), for the cost."""
    settled = settled_mask(p1, threshold, rule)
    m = binary_metrics(labels, np.where(settled, p1, s2), convention=convention)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    n_fake = int(np.sum(labels == 1))
    frame_filtration = float(w[settled].sum() / w.sum())
    n_leaked = int((settled & (labels == 1)).sum())
    point = {"threshold": float(threshold), "auc": m["auc"], "accuracy": m["acc"], "f1": m["f1"],
             "filtration_rate": float(settled.mean()), "frame_filtration": frame_filtration,
             "leakage_rate": n_leaked / n_fake if n_fake else None, "n_leaked": n_leaked, "n_fake": n_fake}
    point.update({f"avg_cost_{unit}": expected_cost(c1, c2, frame_filtration) for unit, (c1, c2) in costs.items()})
    return point


def leakage_upper_bound(n_leaked: int, n_fake: int, confidence: float) -> float | None:
    """One-sided Clopper-Pearson upper bound on the leakage rate from ``n_leaked`` of ``n_fake`` fakes settled;
    ``confidence`` 0 gives the point estimate. None without fakes."""
    if n_fake == 0:
        return None
    if confidence <= 0:
        return n_leaked / n_fake
    return 1.0 if n_leaked >= n_fake else float(beta.ppf(confidence, n_leaked + 1, n_fake - n_leaked))


def choose_operating_point(points: list[dict], max_leakage: float, min_auc: float | None = None,
                           unit: str = "gflops", confidence: float = 0.0):
    """Cheapest point (by ``avg_cost_<unit>``; ties: higher AUC) whose leakage, as its one-sided ``confidence`` upper
    bound (0: the point estimate), is <= max_leakage and whose AUC >= min_auc; None when none qualifies.

    A point estimate at the edge of the constraint on a finite selection split exceeds it on new data about half the
    time; the upper bound keeps the constraint with that confidence (counting frames as independent at frame level,
    which frames of one video are not: the bound is then optimistic)."""
    def upper(p):
        return leakage_upper_bound(p["n_leaked"], p["n_fake"], confidence)

    ok = [p for p in points if upper(p) is not None and upper(p) <= max_leakage
          and (min_auc is None or (p["auc"] is not None and p["auc"] >= min_auc))]
    if not ok:
        return None
    return min(ok, key=lambda p: (p[f"avg_cost_{unit}"], -(p["auc"] or 0.0)))


def plot_tradeoff(points, refs, chosen, path, title: str) -> Path:
    """AUC and accuracy against average cost per frame (GFLOPs), one marker per threshold, stage references."""
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
        ax.set_xlabel("average cost per frame (GFLOPs)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class _Split:
    """One split's stage-1 logits, stage-2 scores and labels, at frame level and (on video data) video level."""

    def __init__(self, cfg, model, t_cal, split, scores, stage2_csv):
        self.rows = read_split(cfg, split)
        missing = [r for r in self.rows if str(Path(r.image_path).resolve()) not in scores]
        if missing:
            raise DataFormatError(stage2_csv, f"no score for {len(missing)} {split} image(s), e.g. "
                                  f"{missing[0].image_path} (manifest line {missing[0].line})")
        self.labels = np.array([r.label for r in self.rows])
        self.logits = predict_logits(model, self.rows, cfg)
        self.s2 = np.array([scores[str(Path(r.image_path).resolve())] for r in self.rows])
        self.p1 = calibrated_probs(self.logits, t_cal)
        self.t_cal, self.cfg = t_cal, cfg

    def level(self, name: str):
        """(p1, s2, labels, frames per sample) at ``frame`` or ``video`` level."""
        if name == "frame":
            return self.p1, self.s2, self.labels, None
        conv = self.cfg.eval.convention
        groups = video_groups(self.rows, conv)
        v1 = aggregate(self.labels, self.logits, self.t_cal, groups, self.cfg.evaluation.video_aggregate, conv)
        v2 = video_metrics(self.labels, self.s2, groups, convention=conv)
        return v1["p_fake"], np.asarray(v2["video_scores"]), np.asarray(v1["video_labels"]), v1["frames"]


def _level_report(cfg, select, report, level, costs) -> dict:
    c = cfg.cascade
    rule, conv = cfg.evaluation.settle_rule, cfg.eval.convention

    def sweep(p1, s2, y, w):
        return [cascade_point(p1, s2, y, t, rule, costs, w, conv) for t in c.sweep]

    def stage2_auc(s2, y):
        return binary_metrics(y, s2, convention=conv)["auc"]

    p1, s2, y, w = report.level(level)
    points = sweep(p1, s2, y, w)
    refs = {}
    for name, score, idx in (("stage 1 only", p1, 0), ("stage 2 only", s2, 1)):
        m = binary_metrics(y, score, convention=conv)
        refs[name] = {"auc": m["auc"], "accuracy": m["acc"], "f1": m["f1"],
                      **{f"avg_cost_{unit}": pair_[idx] for unit, pair_ in costs.items()}}
    sp1, ss2, sy, sw = select.level(level)
    select_auc2 = stage2_auc(ss2, sy)
    min_auc = None if select_auc2 is None else select_auc2 - c.max_auc_drop
    chosen_on_select = choose_operating_point(sweep(sp1, ss2, sy, sw), c.max_leakage, min_auc,
                                              confidence=c.leakage_confidence)
    chosen = None
    if chosen_on_select is not None:
        chosen = next(p for p in points if p["threshold"] == chosen_on_select["threshold"])
        auc2 = refs["stage 2 only"]["auc"]
        chosen = {**chosen, "auc_drop": None if auc2 is None or chosen["auc"] is None else auc2 - chosen["auc"],
                  **{f"cost_ratio_{unit}": chosen[f"avg_cost_{unit}"] / c2 for unit, (_, c2) in costs.items()},
                  "selected_on": {"split": select.rows[0].split, "leakage_rate": chosen_on_select["leakage_rate"],
                                  "leakage_upper_bound": leakage_upper_bound(
                                      chosen_on_select["n_leaked"], chosen_on_select["n_fake"], c.leakage_confidence),
                                  "confidence": c.leakage_confidence,
                                  "auc": chosen_on_select["auc"], "stage2_auc": select_auc2}}
    return {"n": int(len(y)), "n_fake": int(np.sum(y == 1)), "sweep": points, "references": refs,
            "operating_point": chosen}


def run_cascade(cfg, checkpoint=None, temperature_file=None, stage2_csv=None) -> dict:
    """Sweep cfg.cascade.sweep thresholds; writes cascade_report.json, cascade_tradeoff[_video].png and
    cascade_predictions.csv (frames, at the operating point) into the run dir."""
    run_dir = Path(cfg.run_dir)
    c = cfg.cascade
    stage2_csv = stage2_csv or c.stage2_scores
    if not stage2_csv:
        raise ValueError("no stage-2 scores: set cascade.stage2_scores or pass --stage2-scores")
    model, _ = load_trained_model(checkpoint or run_dir / "best_model.pth", cfg)
    t_cal = load_temperature(temperature_file or run_dir / "calibration_temp.json")
    scores, declared = read_score_csv(stage2_csv, cfg.data.root)
    c1, c2 = stage1_costs(cfg, model), stage2_costs(cfg, declared)
    if c2["gflops"] is None:
        raise ValueError(f"stage-2 cost unknown: set cascade.stage2_gflops or add cost_gflops to {stage2_csv}")
    costs = pair(c1, c2)
    report_split = _Split(cfg, model, t_cal, c.split, scores, stage2_csv)
    select_split = report_split if c.select_split in (None, c.split) else \
        _Split(cfg, model, t_cal, c.select_split, scores, stage2_csv)
    levels = ["frame"] + (["video"] if has_videos(report_split.rows) else [])
    report = {"split": c.split, "select_split": c.select_split or c.split, "temperature": t_cal,
              "settle_rule": cfg.evaluation.settle_rule, "convention": cfg.eval.convention,
              "costs": {"stage1": c1, "stage2": c2, "batch_size": cfg.eval.batch_size,
                        "device": str(local_context(cfg.device).device)},
              "stage2_scores": str(stage2_csv), "max_leakage": c.max_leakage,
              "leakage_confidence": c.leakage_confidence, "max_auc_drop": c.max_auc_drop,
              "video_aggregate": cfg.evaluation.video_aggregate}
    for level in levels:
        report[level] = _level_report(cfg, select_split, report_split, level, costs)
    report = to_jsonable(report)
    run_dir.mkdir(parents=True, exist_ok=True)
    for level in levels:
        r = report[level]
        suffix = "" if level == "frame" else "_video"
        plot_tradeoff(r["sweep"], r["references"], r["operating_point"], run_dir / f"cascade_tradeoff{suffix}.png",
                      f"Cascade trade-off ({level}s): stage 1 settles P(real) >= t, the rest go to stage 2")
        op = r["operating_point"]
        if op:
            print(f"{level} operating point t={op['threshold']:g} (chosen on {report['select_split']}): AUC "
                  f"{op['auc']:.4f} (stage 2 alone {r['references']['stage 2 only']['auc']:.4f}), filtration "
                  f"{op['filtration_rate']:.3f}, leakage {op['leakage_rate']:.3f}, cost "
                  + ", ".join(f"{op[f'cost_ratio_{u}']:.3f} x stage 2 ({u})" for u in costs))
        else:
            print(f"{level}: no threshold keeps leakage <= {c.max_leakage} (upper bound at confidence "
                  f"{c.leakage_confidence:g}) and AUC within {c.max_auc_drop} of stage 2 on {report['select_split']}")
    op = report["frame"]["operating_point"]
    settled = settled_mask(report_split.p1, op["threshold"], cfg.evaluation.settle_rule) if op else \
        np.zeros(len(report_split.rows), bool)
    with open(run_dir / "cascade_predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_path", "video", "label", "p_stage1", "score_stage2", "settled", "final_score"])
        for r, a, b, s in zip(report_split.rows, report_split.p1, report_split.s2, settled):
            writer.writerow([r.image_path, r.video, r.label, f"{a:.6f}", f"{b:.6f}", int(s), f"{(a if s else b):.6f}"])
    (run_dir / "cascade_report.json").write_text(json.dumps(report, indent=2))
    return report
