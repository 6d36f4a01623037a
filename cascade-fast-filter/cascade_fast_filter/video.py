"""Frame scores -> video scores, video-level metrics and the video-level cascade table.

Two aggregates, both reported:

- ``prob``: a video's P(fake) is the mean of its frames' calibrated P(fake) = sigmoid(z / T) (DeepfakeBench's video
  AUC averages frame probabilities the same way);
- ``logit``: a video's P(fake) is sigmoid(mean of its frames' logits / T) (the mean in logit space, which lets a few
  confident frames weigh more than in the probability mean).

Metrics come from ``common_utils.metrics.video_metrics`` under the config's convention: ``ours`` groups frames by the
manifest's ``video`` column and refuses a video with mixed labels; ``deepfakebench`` groups by the frame path's
parent-folder name and labels a video fake only if every frame is.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from common_utils.metrics import ece, video_metrics
from scipy.special import expit

from .reporting import markdown_table
from .stage1.calibration import calibrated_probs
from .stage1.thresholds import analyze_cascade_thresholds

AGGREGATES = {"prob": "mean of the frames' calibrated P(fake)", "logit": "sigmoid(mean of the frames' logits / T)"}


def video_groups(rows, convention: str) -> list:
    """What ``video_metrics`` groups by: the frame paths under ``deepfakebench``, the video ids otherwise."""
    return [str(r.image_path) for r in rows] if convention == "deepfakebench" else [r.video for r in rows]


def _key(group, convention: str):
    return Path(group).parent.name if convention == "deepfakebench" else group


def aggregate(labels, logits, temperature: float, groups, how: str = "prob", convention: str = "ours") -> dict:
    """Video-level ``video_metrics`` of one aggregate (``prob`` | ``logit``) plus ``p_fake`` [V] (the videos'
    P(fake), in ``videos`` order) and ``frames`` [V] (frames per video)."""
    z = np.asarray(logits, dtype=np.float64)
    if how == "prob":
        m = video_metrics(labels, calibrated_probs(z, temperature), groups, threshold=0.5, convention=convention)
        p = np.asarray(m["video_scores"])
    elif how == "logit":  # threshold 0 on the mean logit = 0.5 on its sigmoid
        m = video_metrics(labels, z / temperature, groups, threshold=0.0, convention=convention)
        p = expit(np.asarray(m["video_scores"]))
    else:
        raise ValueError(f"unknown video aggregate {how!r}; use one of {', '.join(AGGREGATES)}")
    counts = Counter(_key(g, convention) for g in groups)
    m.update(p_fake=p, frames=np.array([counts[v] for v in m["videos"]]), aggregate_rule=AGGREGATES[how])
    return m


def video_report(labels, logits, temperature: float, groups, cfg, costs=None) -> dict:
    """Per aggregate: videos, AUC, EER, accuracy, F1, ECE of the video P(fake), and the video-level cascade table
    (a video is settled when its aggregated P(real) >= t; the cost per frame counts every frame of a video)."""
    e, conv = cfg.eval, cfg.eval.convention
    out = {}
    for how in AGGREGATES:
        m = aggregate(labels, logits, temperature, groups, how, conv)
        y = np.asarray(m["video_labels"])
        out[how] = {
            "rule": m["aggregate_rule"], "n_videos": len(y), "n_fake": int(y.sum()), "n_real": int(len(y) - y.sum()),
            "auc": m["auc"], "eer": m["eer"], "accuracy": m["acc"], "f1": m["f1"],
            "ece": ece(y, m["p_fake"], n_bins=e.n_bins, scheme=e.ece_scheme, convention=conv)["value"],
            "cascade": analyze_cascade_thresholds(m["p_fake"], y, list(cfg.evaluation.thresholds),
                                                  cfg.evaluation.settle_rule, costs, weights=m["frames"]),
        }
    return out


def video_table(report: dict) -> list[str]:
    """Markdown lines: the metrics of each aggregate, then each aggregate's video-level cascade table."""
    lines = markdown_table(["video score", "videos", "AUC", "EER", "accuracy", "F1", "ECE"],
                           [[f"{how}: {r['rule']}", r["n_videos"], r["auc"], r["eer"], r["accuracy"], r["f1"],
                             r["ece"]] for how, r in report.items()])
    for how, r in report.items():
        units = [k.removeprefix("expected_cost_") for k in next(iter(r["cascade"].values())) if
                 k.startswith("expected_cost_")]
        lines += ["", f"Video-level cascade ({how}): a video is settled when its P(real) >= t", ""]
        lines += markdown_table(
            ["t", "videos settled", "leakage (fake videos)", "frames settled", *[f"cost/frame ({u})" for u in units]],
            [[t, c["filtration_rate"], c["leakage_rate"], c["frame_filtration"],
              *[c[f"expected_cost_{u}"] for u in units]] for t, c in r["cascade"].items()])
    return lines
