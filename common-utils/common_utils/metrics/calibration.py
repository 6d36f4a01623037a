"""Expected calibration error in three named variants, and reliability-diagram data.

- ``positive``   (default): bins of P(label 1) against the fraction of label-1 samples, equal-width bins
                  (torchmetrics ``BinaryCalibrationError``, netcal ``ECE`` on 1-D input).
- ``top_label``: bins of max(p, 1 - p) against the accuracy of the predicted label, equal-width bins (Guo et al. 2017).
- ``equal_mass``: positive-class confidences in bins holding (almost) equal numbers of samples (Nixon et al. 2019).
Equal-width bins are right-closed, ``(lo, hi]``, with 0 falling into the first bin.

DeepfakeBench, PG-FDD and PartialSpoof define no ECE: every ``convention`` gives the ``scheme``'s definition (the
keyword exists so that a project can pass its one convention name to every metric), except that ``top_label``'s
predicted label at p = 0.5 follows the convention's threshold rule (``p > 0.5`` under ``deepfakebench``).
"""
from __future__ import annotations

import numpy as np

from .conventions import DEFAULT_CONVENTION, check_convention, predict_positive

DEFINITIONS = {
    "positive": "positive-class ECE: equal-width bins of P(y=1) vs observed fraction of y=1, weighted by bin size",
    "top_label": "top-label ECE: equal-width bins of max(p,1-p) vs accuracy of the predicted label, "
                 "weighted by bin size",
    "equal_mass": "equal-mass positive-class ECE: bins of P(y=1) holding equal sample counts, weighted by bin size",
}


def _confidence_and_target(labels, probs, scheme: str, convention: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and probs differ in length: {y.size} vs {p.size}")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("probs must lie in [0, 1]")
    if scheme == "top_label":
        pred = predict_positive(p, 0.5, convention).astype(int)
        return np.maximum(p, 1 - p), (pred == y).astype(np.float64)
    if scheme in ("positive", "equal_mass"):
        return p, y.astype(np.float64)
    raise ValueError(f"unknown ECE scheme {scheme!r}; use one of {sorted(DEFINITIONS)}")


def _bin_index(conf: np.ndarray, n_bins: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    if scheme == "equal_mass":
        order = np.argsort(conf, kind="stable")
        idx = np.empty(conf.size, dtype=int)
        for b, chunk in enumerate(np.array_split(order, n_bins)):
            idx[chunk] = b
        edges = np.array([0.0] + [conf[c].max() if c.size else np.nan for c in np.array_split(order, n_bins)])
        return idx, edges
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    return idx, edges


def reliability_data(labels, probs, n_bins: int = 15, scheme: str = "positive", *,
                     convention: str = DEFAULT_CONVENTION) -> dict:
    """Per-bin mean confidence, observed accuracy/frequency and count (NaN for empty bins) plus the bin edges."""
    check_convention(convention, "reliability_data")
    conf, target = _confidence_and_target(labels, probs, scheme, convention)
    idx, edges = _bin_index(conf, n_bins, scheme)
    count = np.bincount(idx, minlength=n_bins).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(idx, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(idx, weights=target, minlength=n_bins) / count
    return {"edges": edges, "confidence": confidence, "accuracy": accuracy, "count": count, "scheme": scheme}


def ece(labels, probs, n_bins: int = 15, scheme: str = "positive", *, convention: str = DEFAULT_CONVENTION) -> dict:
    """ECE = sum_b |B_b|/N * |acc_b - conf_b| in the named ``scheme``; returns the value with its definition."""
    check_convention(convention, "ece")
    data = reliability_data(labels, probs, n_bins, scheme, convention=convention)
    n = data["count"].sum()
    filled = data["count"] > 0
    gaps = np.abs(data["accuracy"][filled] - data["confidence"][filled])
    value = float((data["count"][filled] / n * gaps).sum()) if n else None
    return {"value": value, "scheme": scheme, "n_bins": n_bins, "definition": DEFINITIONS[scheme],
            "convention": convention}
