"""Subgroup fairness metrics as PG-FDD (Lin et al., CVPR 2024, ``training/fairness_metrics.py::acc_fairness``)
defines them, under a named convention.

Per group, at the convention's threshold rule (``score >= threshold`` except ``deepfakebench``'s ``>``): AUC, FPR,
TPR, FNR, TNR, accuracy, positive rate PR = (TP + FP) / n (PG-FDD's ``F_G`` of a group), negative rate NR and
ErrorRate = 1 - (TPR + TNR) / 2. ``overall`` holds the same over all samples.

Gaps between groups (``100 x (max - min)`` unless said otherwise):

- F_FPR (FPR), F_OAE (accuracy), F_DP = max(PR gap, NR gap), F_MEO = max(FPR, FNR, TNR, TPR gaps),
  F_ER (ErrorRate), F_AUC (AUC); ``auc_gap`` = max - min AUC, not scaled.
- Against the overall rates, as fractions (PG-FDD prints them unscaled):
  F_G = max_g |PR_g - PR|; F_S = max_g PR_g - min_g PR_g; F_A = (F_G + F_S) / 2;
  F_EFPR = sum_g |FPR_g - FPR|; F_EO = sum_g |FPR_g - FPR| + |TPR_g - TPR|.
- F_COV = sum_k w_k / N * |sum_{i in group k} (z_i - mean(z))|, the absolute per-group terms of the covariance
  between the group index w_k (its position in ``group_order``, 0-based) and the score z: PG-FDD's ``cov``, which
  uses the raw class-1 logits (pass ``logits=``; without them z is ``scores``). Every group counts, as upstream.

Which groups count (a rate is ``None`` for a group without the class it conditions on: FPR/TNR need label 0,
TPR/FNR label 1, AUC and ErrorRate both):

- ``ours`` (default), ``deepfakebench``, ``partialspoof``: every group where the rate is defined.
- ``pgfdd``: only groups holding both labels; a one-class group is dropped from every gap, F_DP and F_OAE
  included (upstream's per-group metrics raise on it and the group is skipped).

A gap over fewer than two groups, or a sum over none, is ``None``.
"""
from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from .binary import _as_arrays, roc_auc
from .conventions import DEFAULT_CONVENTION, check_convention, predict_positive

RATES = ("fpr", "tpr", "fnr", "tnr", "acc", "pr", "nr", "error_rate", "auc")


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _group_stats(y: np.ndarray, s: np.ndarray, pred: np.ndarray) -> dict:
    pos, neg = y == 1, y == 0
    tp, fn = int((pred & pos).sum()), int((~pred & pos).sum())
    fp, tn = int((pred & neg).sum()), int((~pred & neg).sum())
    n = int(y.size)
    tpr, tnr = _rate(tp, tp + fn), _rate(tn, fp + tn)
    return {
        "n": n, "n_pos": int(pos.sum()), "n_neg": int(neg.sum()),
        "auc": roc_auc(y, s) if n else None,
        "fpr": _rate(fp, fp + tn), "tnr": tnr, "tpr": tpr, "fnr": _rate(fn, tp + fn),
        "acc": _rate(tp + tn, n), "pr": _rate(tp + fp, n), "nr": _rate(tn + fn, n),
        "error_rate": 1.0 - (tpr + tnr) / 2 if tpr is not None and tnr is not None else None,
    }


def _values(groups: list[dict], key: str) -> list[float]:
    return [g[key] for g in groups if g[key] is not None]


def _gap(groups: list[dict], key: str, scale: float = 100.0) -> float | None:
    values = _values(groups, key)
    return scale * (max(values) - min(values)) if len(values) >= 2 else None


def _max_or_none(*values: float | None) -> float | None:
    defined = [v for v in values if v is not None]
    return max(defined) if defined else None


def _deviation_sum(groups: list[dict], overall: dict, keys: Sequence[str]) -> float | None:
    terms = [abs(g[k] - overall[k]) for k in keys if overall[k] is not None for g in groups if g[k] is not None]
    return float(sum(terms)) if terms else None


def _order(present: list, group_order: Sequence[Hashable] | None) -> list:
    if group_order is None:
        try:
            return sorted(present)
        except TypeError:
            return sorted(present, key=str)
    order = list(group_order)
    missing = [g for g in present if g not in order]
    if missing:
        raise ValueError(f"group {missing[0]!r} is not in group_order {order}")
    if len(set(order)) != len(order):
        raise ValueError(f"group_order lists a group twice: {order}")
    return order


def fairness_metrics(labels, scores, groups: Sequence[Hashable], threshold: float = 0.5, *,
                     convention: str = DEFAULT_CONVENTION, logits=None,
                     group_order: Sequence[Hashable] | None = None) -> dict:
    """Per-group rates (``groups``, in ``group_order``), ``overall`` rates and every gap of the module docstring.

    ``groups[i]`` is sample i's group; ``group_order`` fixes the order and F_COV's weights (default: sorted keys;
    PG-FDD's are its attribute lists, e.g. ``["male", "nonmale"]``, ``["asian", "white", "black", "others"]``) and may
    list absent groups. ``logits`` (same length as ``scores``) is what F_COV covers.
    """
    check_convention(convention, "fairness_metrics")
    y, s = _as_arrays(labels, scores)
    keys = list(groups)
    if len(keys) != y.size:
        raise ValueError(f"groups has {len(keys)} entries for {y.size} scores")
    z = s if logits is None else np.asarray(logits, dtype=np.float64).ravel()
    if z.shape != s.shape or not np.isfinite(z).all():
        raise ValueError(f"logits must be {s.size} finite values, one per score")
    pred = predict_positive(s, threshold, convention)
    order = _order(list(dict.fromkeys(keys)), group_order)
    index = {key: j for j, key in enumerate(order)}
    codes = np.fromiter((index[key] for key in keys), dtype=int, count=len(keys))
    masks = {key: codes == j for j, key in enumerate(order)}
    per_group = {key: _group_stats(y[m], s[m], pred[m]) for key, m in masks.items()}
    overall = _group_stats(y, s, pred)
    counted = [st for st in per_group.values() if convention != "pgfdd" or (st["n_pos"] and st["n_neg"])]
    gaps = {k: _gap(counted, k) for k in RATES}
    pr = _values(counted, "pr")
    f_g = max(abs(v - overall["pr"]) for v in pr) if pr else None
    f_s = max(pr) - min(pr) if len(pr) >= 2 else None
    n = y.size
    f_cov = float(sum(w / n * abs((z[m] - z.mean()).sum()) for w, m in enumerate(masks.values()))) if n else None
    return {
        "groups": per_group,
        "overall": overall,
        "F_FPR": gaps["fpr"],
        "F_OAE": gaps["acc"],
        "F_DP": _max_or_none(gaps["pr"], gaps["nr"]),
        "F_MEO": _max_or_none(gaps["fpr"], gaps["fnr"], gaps["tnr"], gaps["tpr"]),
        "F_ER": gaps["error_rate"],
        "F_AUC": gaps["auc"],
        "auc_gap": _gap(counted, "auc", scale=1.0),
        "F_G": f_g,
        "F_S": f_s,
        "F_A": (f_g + f_s) / 2 if f_g is not None and f_s is not None else None,
        "F_EFPR": _deviation_sum(counted, overall, ("fpr",)),
        "F_EO": _deviation_sum(counted, overall, ("fpr", "tpr")),
        "F_COV": f_cov,
        "threshold": float(threshold),
        "convention": convention,
    }


def fairness_report(labels, scores, attributes: Mapping[str, Sequence[Hashable]], threshold: float = 0.5, *,
                    convention: str = DEFAULT_CONVENTION, logits=None,
                    orders: Mapping[str, Sequence[Hashable]] | None = None) -> dict:
    """``fairness_metrics`` for each attribute and for their intersection, as PG-FDD reports gender, race and
    intersectional fairness.

    ``attributes`` maps a name to each sample's value (at least two, e.g. ``{"gender": ..., "race": ...}``);
    ``orders`` optionally maps a name to its value order (F_COV weights). The ``"intersection"`` entry groups by the
    tuple of values, ordered as the product of the orders. Under ``pgfdd``, an attribute's F_A is
    (F_G of the attribute + F_S of the intersection) / 2, as ``acc_fairness`` computes it; elsewhere each F_A uses
    its own F_S.
    """
    check_convention(convention, "fairness_report")
    if len(attributes) < 2 or "intersection" in attributes:
        raise ValueError(f"fairness_report needs two or more attributes, none named 'intersection'; got "
                         f"{list(attributes)} (use fairness_metrics for one grouping)")
    orders = dict(orders or {})
    values = {name: list(v) for name, v in attributes.items()}
    report = {name: fairness_metrics(labels, scores, v, threshold, convention=convention, logits=logits,
                                     group_order=orders.get(name)) for name, v in values.items()}
    inter = list(zip(*values.values()))
    inter_order = None
    if all(name in orders for name in values):
        inter_order = list(itertools.product(*(orders[name] for name in values)))
    report["intersection"] = fairness_metrics(labels, scores, inter, threshold, convention=convention, logits=logits,
                                              group_order=inter_order)
    if convention == "pgfdd":
        f_s = report["intersection"]["F_S"]
        for name in values:
            f_g = report[name]["F_G"]
            report[name]["F_A"] = (f_g + f_s) / 2 if f_g is not None and f_s is not None else None
    return report
