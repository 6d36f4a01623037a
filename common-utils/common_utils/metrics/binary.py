"""Binary detection metrics: AUC, AP, EER, accuracy, F1, confusion matrix, video-level metrics.

Labels are 0/1 and scores are higher for label 1. A ranking metric is ``None`` when only one class is present, never a
made-up number (DeepfakeBench prints NaN there). Every function takes ``convention=`` (``conventions.CONVENTIONS``,
default ``"ours"``); its docstring says what each convention changes.
"""
from __future__ import annotations

import os
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score, roc_curve

from .conventions import DEFAULT_CONVENTION, THRESHOLD_RULE, check_convention, predict_positive

VIDEO_AGGREGATES = {"mean": np.mean, "median": np.median, "max": np.max}


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


def roc_auc(labels, scores, *, convention: str = DEFAULT_CONVENTION) -> float | None:
    """Area under the ROC curve (sklearn ``roc_auc_score``), ``None`` with one class.

    Every convention gives the same number: DeepfakeBench's ``auc(*roc_curve(...)[:2])`` and PG-FDD's
    ``roc_auc_score`` are the same trapezoidal area.
    """
    check_convention(convention, "roc_auc")
    y, s = _as_arrays(labels, scores)
    return float(roc_auc_score(y, s)) if _two_classes(y) else None


def average_precision(labels, scores, *, convention: str = DEFAULT_CONVENTION) -> float | None:
    """Average precision, sum_k (R_k - R_{k-1}) P_k (sklearn ``average_precision_score``, no interpolation; the
    same under every convention, DeepfakeBench calls the same function), ``None`` with one class."""
    check_convention(convention, "average_precision")
    y, s = _as_arrays(labels, scores)
    return float(average_precision_score(y, s)) if _two_classes(y) else None


def _interpolated_crossing(fpr: np.ndarray, fnr: np.ndarray, thr: np.ndarray, top: float) -> tuple[float, float]:
    """Where FPR = FNR on a curve whose ``fpr - fnr`` rises from -1 to 1: the first point with FPR = FNR, else the
    linear interpolation between the two points around the crossing (rate and threshold alike; an infinite first
    threshold counts as ``top``)."""
    t = np.where(np.isfinite(thr), thr, top)
    diff = fpr - fnr
    i = int(np.searchsorted(diff, 0.0))
    if diff[i] == 0:
        return float(fpr[i]), float(t[i])
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1])), float(t[i - 1] + w * (t[i] - t[i - 1]))


def _roc_argmin_eer(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """DeepfakeBench / PG-FDD: FPR (and threshold) at the first argmin |FNR - FPR| over sklearn's ``roc_curve`` with
    its default ``drop_intermediate=True`` (dropping collinear points changes which point is nearest)."""
    fpr, tpr, thr = roc_curve(y, s)
    i = int(np.nanargmin(np.abs((1.0 - tpr) - fpr)))
    return float(fpr[i]), float(thr[i])


def _asvspoof_eer(target: np.ndarray, nontarget: np.ndarray) -> tuple[float, float]:
    """ASVspoof ``compute_eer`` (what PartialSpoof's metric scripts call): sort all scores with a stable sort of
    [target, non-target] (so a target precedes a non-target of equal score); after the first k sorted scores
    FRR_k = targets among them / #targets and FAR_k = non-targets after them / #non-targets (k = 0..N); at the first
    argmin |FRR_k - FAR_k| return (FRR_k + FAR_k) / 2 and the threshold (the k-th sorted score; the smallest score
    minus 0.001 for k = 0)."""
    scores = np.concatenate([target, nontarget])
    is_target = np.concatenate([np.ones(target.size), np.zeros(nontarget.size)])
    order = np.argsort(scores, kind="mergesort")
    targets_below = np.cumsum(is_target[order])
    frr = np.concatenate([[0.0], targets_below / target.size])
    far = np.concatenate([[1.0], (nontarget.size - (np.arange(1, scores.size + 1) - targets_below)) / nontarget.size])
    thresholds = np.concatenate([[scores[order[0]] - 0.001], scores[order]])
    k = int(np.argmin(np.abs(frr - far)))
    return float((frr[k] + far[k]) / 2), float(thresholds[k])


def eer(labels, scores, *, convention: str = DEFAULT_CONVENTION) -> tuple[float, float] | tuple[None, None]:
    """Equal error rate and its threshold, ``(None, None)`` with one class. FPR = label-0 scores flagged as label 1,
    FNR = label-1 scores not flagged.

    - ``ours``: the point where FPR = FNR on the full ROC curve (sklearn ``roc_curve(drop_intermediate=False)``),
      linearly interpolated between the two ROC points around it; the threshold is interpolated alike.
    - ``deepfakebench`` / ``pgfdd``: ``fpr[nanargmin(|fnr - fpr|)]`` over sklearn's default ``roc_curve`` points
      (no interpolation); the threshold is ``thresholds`` at that index (``inf`` when it is the first point).
    - ``partialspoof``: ASVspoof ``compute_eer`` with label 1 as the target class (the class scored higher):
      (FRR + FAR) / 2 at the first argmin |FRR - FAR| over every sorted score; a score above the returned threshold
      is accepted as label 1. (The localisation metrics put bona fide first, as PartialSpoof does.)
    """
    check_convention(convention, "eer")
    y, s = _as_arrays(labels, scores)
    if not _two_classes(y):
        return None, None
    if convention in ("deepfakebench", "pgfdd"):
        return _roc_argmin_eer(y, s)
    if convention == "partialspoof":
        return _asvspoof_eer(s[y == 1], s[y == 0])
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    return _interpolated_crossing(fpr, 1.0 - tpr, thr, float(s.max()))


def binary_metrics(labels, scores, threshold: float = 0.5, *, convention: str = DEFAULT_CONVENTION) -> dict:
    """AUC, AP, EER (+ threshold) in the convention's definition and, at its threshold rule, accuracy, F1 and the
    confusion matrix ``[[tn, fp], [fn, tp]]``.

    Threshold rule: label 1 when ``score >= threshold`` (``ours``, ``pgfdd``, ``partialspoof``) or ``score >
    threshold`` (``deepfakebench``, whose accuracy is ``(y_pred > 0.5) == y_true``).
    """
    check_convention(convention, "binary_metrics")
    y, s = _as_arrays(labels, scores)
    pred = predict_positive(s, threshold, convention).astype(int)
    rate, thr = eer(y, s, convention=convention)
    return {
        "auc": roc_auc(y, s),
        "ap": average_precision(y, s),
        "eer": rate,
        "eer_threshold": thr,
        "acc": float((pred == y).mean()) if y.size else None,
        "f1": float(f1_score(y, pred, zero_division=0)),
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "n_neg": int(y.size - y.sum()),
        "threshold": float(threshold),
        "threshold_rule": THRESHOLD_RULE[convention],
        "convention": convention,
    }


def _parent_folder(path) -> str:
    """DeepfakeBench's video key: split the path on backslashes if it has any, else on slashes; take the part before
    the last (the parent folder's name, not its full path)."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str):
        raise ValueError(f"convention 'deepfakebench' groups frames by their path's parent folder: got {path!r}; "
                         "pass the frame paths as groups")
    parts = text.split("\\") if "\\" in text else text.split("/")
    if len(parts) < 2:
        raise ValueError(f"frame path {text!r} has no parent folder to name its video (convention 'deepfakebench')")
    return parts[-2]


def _video_level(labels, scores, groups, aggregate: str, convention: str):
    y, s = _as_arrays(labels, scores)
    if aggregate not in VIDEO_AGGREGATES:
        raise ValueError(f"unknown video aggregate {aggregate!r}; use one of {', '.join(VIDEO_AGGREGATES)}")
    groups = list(groups)
    if len(groups) != y.size:
        raise ValueError(f"groups has {len(groups)} entries for {y.size} scores")
    keys = [_parent_folder(g) for g in groups] if convention == "deepfakebench" else groups
    frames: dict = {}
    for i, key in enumerate(keys):
        frames.setdefault(key, []).append(i)
    videos = list(frames)
    v_labels, v_scores = [], []
    for key in videos:
        idx = np.asarray(frames[key])
        frame_labels = y[idx]
        if convention == "deepfakebench":  # int(mean label): fake only if every frame is
            v_labels.append(int(frame_labels.all()))
        elif frame_labels.min() != frame_labels.max():
            raise ValueError(f"video {key!r} mixes labels 0 and 1 (convention {convention!r} needs one label per "
                             "video; convention 'deepfakebench' labels such a video real)")
        else:
            v_labels.append(int(frame_labels[0]))
        v_scores.append(float(VIDEO_AGGREGATES[aggregate](s[idx])))
    return videos, np.asarray(v_labels, dtype=int), np.asarray(v_scores)


def video_metrics(labels, scores, groups: Sequence[Hashable], threshold: float = 0.5, *, aggregate: str = "mean",
                  convention: str = DEFAULT_CONVENTION) -> dict:
    """``binary_metrics`` over videos, plus ``videos`` (keys in first-seen order), ``video_labels``, ``video_scores``.

    A video's score aggregates its frame scores: ``mean`` (default; DeepfakeBench averages frame probabilities too),
    ``median`` or ``max``. Its key and label:

    - ``ours`` / ``pgfdd`` / ``partialspoof``: the key is ``groups[i]`` itself (any hashable video id); a video whose
      frames carry both labels is refused with a ValueError naming it.
    - ``deepfakebench``: ``groups`` are frame paths and the key is the parent folder's *name* (``a/b/vid/0.png`` ->
      ``vid``; two datasets with equally named folders merge, as upstream); the label is ``int(mean frame label)``:
      fake only if every frame is. Its EER and accuracy follow the convention too.
    """
    check_convention(convention, "video_metrics")
    videos, v_labels, v_scores = _video_level(labels, scores, groups, aggregate, convention)
    out = binary_metrics(v_labels, v_scores, threshold, convention=convention)
    out.update(videos=videos, video_labels=v_labels.tolist(), video_scores=v_scores.tolist(), aggregate=aggregate)
    return out


def video_auc(labels, scores, groups: Sequence[Hashable], *, aggregate: str = "mean",
              convention: str = DEFAULT_CONVENTION) -> float | None:
    """AUC over videos; keys, labels and scores as in ``video_metrics``."""
    check_convention(convention, "video_auc")
    _, v_labels, v_scores = _video_level(labels, scores, groups, aggregate, convention)
    return roc_auc(v_labels, v_scores)
