"""Binary detection metrics: AUC, AP, EER, accuracy, F1, confusion matrix, video-level AUC.

Convention: ``labels`` are 0/1 and ``scores`` are higher for label 1. Ranking metrics are ``None`` when only one class
is present, never a made-up number.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score, roc_curve


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, got values {sorted(set(y.tolist()) - {0, 1})}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinity")
    return y, s


def _two_classes(y: np.ndarray) -> bool:
    return 0 < y.sum() < y.size


def roc_auc(labels, scores) -> float | None:
    y, s = _as_arrays(labels, scores)
    return float(roc_auc_score(y, s)) if _two_classes(y) else None


def average_precision(labels, scores) -> float | None:
    y, s = _as_arrays(labels, scores)
    return float(average_precision_score(y, s)) if _two_classes(y) else None


def eer(labels, scores) -> tuple[float, float] | tuple[None, None]:
    """Equal error rate and its threshold: the ROC point where FPR = FNR (linear interpolation between points)."""
    y, s = _as_arrays(labels, scores)
    if not _two_classes(y):
        return None, None
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increasing from <= 0 to >= 0 along the curve
    i = int(np.searchsorted(diff, 0.0))
    if i == 0 or diff[i] == 0:
        return float(fpr[i]), float(thr[i]) if np.isfinite(thr[i]) else float(s.max())
    # interpolate between points i-1 (fpr < fnr) and i (fpr > fnr)
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    t0 = thr[i - 1] if np.isfinite(thr[i - 1]) else s.max()
    return float(rate), float(t0 + w * (thr[i] - t0))


def binary_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """AUC, AP, EER (+threshold) and, at ``scores >= threshold``, accuracy, F1 and the confusion matrix."""
    y, s = _as_arrays(labels, scores)
    pred = (s >= threshold).astype(int)
    cm = confusion_matrix(y, pred, labels=[0, 1])
    rate, thr = eer(y, s)
    return {
        "auc": roc_auc(y, s),
        "ap": average_precision(y, s),
        "eer": rate,
        "eer_threshold": thr,
        "acc": float((pred == y).mean()) if y.size else None,
        "f1": float(f1_score(y, pred, zero_division=0)),
        "confusion_matrix": cm.tolist(),
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "n_neg": int(y.size - y.sum()),
        "threshold": float(threshold),
    }


def video_auc(labels, scores, groups: Sequence[Hashable]) -> float | None:
    """AUC over groups (e.g. videos): each group's score is the mean of its frame scores; its label must be unique."""
    y, s = _as_arrays(labels, scores)
    if len(groups) != y.size:
        raise ValueError(f"groups has {len(groups)} entries for {y.size} scores")
    by_group: dict = defaultdict(list)
    label_of: dict = {}
    for g, label, score in zip(groups, y, s):
        if label_of.setdefault(g, label) != label:
            raise ValueError(f"group {g!r} mixes labels 0 and 1")
        by_group[g].append(score)
    keys = list(by_group)
    return roc_auc([label_of[k] for k in keys], [float(np.mean(by_group[k])) for k in keys])
