"""Subgroup fairness metrics as PG-FDD (Lin et al., CVPR 2024) defines them.

Per group: AUC, FPR, TPR, FNR, TNR, accuracy, positive rate (PR) and negative rate (NR) at ``scores >= threshold``.
Gaps are ``100 * (max - min)`` over the groups where the rate is defined:
F_FPR (FPR), F_OAE (accuracy), F_DP (max of the PR and NR gaps), F_MEO (max of the FPR, FNR, TNR and TPR gaps), and the
AUC gap (max - min AUC, not scaled). A rate is undefined (``None``) for a group without the class it conditions on
(FPR/TNR need negatives, TPR/FNR need positives, AUC needs both), and such a group is left out of that gap.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from .binary import _as_arrays, roc_auc


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _group_stats(y: np.ndarray, s: np.ndarray, threshold: float) -> dict:
    pred = s >= threshold
    pos, neg = y == 1, y == 0
    tp, fn = int((pred & pos).sum()), int((~pred & pos).sum())
    fp, tn = int((pred & neg).sum()), int((~pred & neg).sum())
    n = int(y.size)
    return {
        "n": n, "n_pos": int(pos.sum()), "n_neg": int(neg.sum()),
        "auc": roc_auc(y, s) if n else None,
        "fpr": _rate(fp, fp + tn), "tnr": _rate(tn, fp + tn),
        "tpr": _rate(tp, tp + fn), "fnr": _rate(fn, tp + fn),
        "acc": _rate(tp + tn, n), "pr": _rate(tp + fp, n), "nr": _rate(tn + fn, n),
    }


def _gap(groups: dict, key: str, scale: float = 100.0) -> float | None:
    values = [g[key] for g in groups.values() if g[key] is not None]
    return scale * (max(values) - min(values)) if len(values) >= 2 else None


def _max_gap(*gaps: float | None) -> float | None:
    defined = [g for g in gaps if g is not None]
    return max(defined) if defined else None


def fairness_metrics(labels, scores, groups: Sequence[Hashable], threshold: float = 0.5) -> dict:
    """Per-group rates and the PG-FDD gap metrics; see the module docstring for every definition."""
    y, s = _as_arrays(labels, scores)
    g = np.asarray(list(groups), dtype=object)
    if g.size != y.size:
        raise ValueError(f"groups has {g.size} entries for {y.size} scores")
    per_group = {key: _group_stats(y[g == key], s[g == key], threshold) for key in sorted(set(g.tolist()), key=str)}
    gaps = {k: _gap(per_group, k) for k in ("fpr", "tpr", "fnr", "tnr", "acc", "pr", "nr")}
    return {
        "groups": per_group,
        "F_FPR": gaps["fpr"],
        "F_OAE": gaps["acc"],
        "F_DP": _max_gap(gaps["pr"], gaps["nr"]),
        "F_MEO": _max_gap(gaps["fpr"], gaps["fnr"], gaps["tnr"], gaps["tpr"]),
        "auc_gap": _gap(per_group, "auc", scale=1.0),
        "threshold": float(threshold),
    }
