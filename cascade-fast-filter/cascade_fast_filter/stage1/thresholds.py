"""Cascade threshold arithmetic: which samples stage 1 settles as real, leakage, filtration and expected cost.

A sample (a frame, or a video with its aggregated score) is settled as real when P(real) = 1 - P(fake) >= t; the
rest go to stage 2. Expected cost per frame = C1 + (1 - filtration) x C2, in any unit (GFLOPs, ms).
"""
from __future__ import annotations

import numpy as np


def settled_mask(p_fake, threshold: float, rule: str = "p_real") -> np.ndarray:
    """Samples stage 1 settles as real. p_real: 1 - P(fake) >= t. design: P(fake) > t (the design's defect:
    it settles confident *fakes* as real)."""
    p_fake = np.asarray(p_fake, dtype=np.float64)
    if rule == "p_real":
        return (1.0 - p_fake) >= threshold
    if rule == "design":
        return p_fake > threshold
    raise ValueError(f"unknown settle rule {rule!r}; expected 'p_real' or 'design'")


def expected_cost(c1: float, c2: float, filtration: float) -> float:
    """Average cost per sample of the cascade: every sample pays C1, the unsettled (1 - filtration) also C2."""
    return c1 + (1.0 - filtration) * c2


def threshold_key(t: float) -> str:
    """Report key of a threshold: two decimals where that is exact (0.90, 0.98), else as written (0.995)."""
    return f"{t:.2f}" if round(t, 2) == t else str(t)


def analyze_cascade_thresholds(p_fake, labels, thresholds, rule="p_real", costs=None, weights=None) -> dict:
    """Per threshold: filtration, leakage (fakes settled / fakes), precision of the settled set (real share),
    real specificity (reals settled / reals), the class-prior bound on filtration, and the expected cost.

    ``costs``: {unit: (C1, C2)} per frame, e.g. {"gflops": (2.5, 40.0), "ms": (0.9, 12.0)}; each gives an
    ``expected_cost_<unit>``. ``weights``: frames per sample when the samples are videos (a settled video spares
    stage 2 all its frames); the cost then uses ``frame_filtration`` = settled frames / all frames.
    """
    p_fake, labels = np.asarray(p_fake, dtype=np.float64), np.asarray(labels).astype(int)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    n, n_fake = len(labels), int((labels == 1).sum())
    n_real = n - n_fake
    real_share = n_real / n if n else float("nan")
    out = {}
    for t in thresholds:
        settled = settled_mask(p_fake, t, rule)
        n_settled = int(settled.sum())
        leaked = int((settled & (labels == 1)).sum())
        real_settled = n_settled - leaked
        filtration = n_settled / n if n else float("nan")
        leakage = leaked / n_fake if n_fake else None
        frame_filtration = float(w[settled].sum() / w.sum()) if n else float("nan")
        row = {
            "threshold": float(t),
            "n_settled": n_settled,
            "filtration_rate": filtration,
            "leakage_rate": leakage,
            "false_negatives": leaked,
            "settled_precision": real_settled / n_settled if n_settled else None,
            "real_specificity": real_settled / n_real if n_real else None,
            "filtration_bound": real_share + (leakage or 0.0) * (1.0 - real_share),
        }
        if weights is not None:
            row["frame_filtration"] = frame_filtration
        for unit, (c1, c2) in (costs or {}).items():
            if c1 is not None and c2 is not None:
                row[f"expected_cost_{unit}"] = expected_cost(c1, c2, frame_filtration)
        out[threshold_key(t)] = row
    return out
