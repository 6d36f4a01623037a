"""Figures for reports (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from .metrics import ece, reliability_data, roc_auc  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_roc(curves: Mapping[str, tuple], path: str | os.PathLike, title: str | None = None) -> Path:
    """ROC curves, one per ``name -> (labels, scores)``, with the AUC in the legend (single-class entries skipped)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (labels, scores) in curves.items():
        auc = roc_auc(labels, scores)
        if auc is None:
            continue
        fpr, tpr, _ = roc_curve(np.asarray(labels).astype(int), np.asarray(scores, dtype=float))
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=title or "ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_reliability(labels, probs: Mapping[str, np.ndarray] | np.ndarray, path: str | os.PathLike, n_bins: int = 15,
                     scheme: str = "positive", title: str | None = None) -> Path:
    """Reliability diagram per entry of ``probs`` (e.g. before/after calibration) with a confidence histogram below."""
    if not isinstance(probs, Mapping):
        probs = {"model": probs}
    fig, axes = plt.subplots(2, len(probs), figsize=(4.5 * len(probs), 6), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    for col, (name, p) in enumerate(probs.items()):
        data = reliability_data(labels, p, n_bins, scheme)
        value = ece(labels, p, n_bins, scheme)["value"]
        edges = data["edges"]
        width = np.diff(edges)
        filled = data["count"] > 0
        top, bottom = axes[0, col], axes[1, col]
        top.bar(edges[:-1][filled], data["accuracy"][filled], width=width[filled], align="edge",
                edgecolor="k", alpha=0.7, label="observed")
        top.bar(edges[:-1][filled], data["confidence"][filled] - data["accuracy"][filled],
                bottom=data["accuracy"][filled], width=width[filled], align="edge", color="red", alpha=0.25,
                label="gap")
        top.plot([0, 1], [0, 1], "k--", lw=0.8)
        ylabel = "accuracy" if scheme == "top_label" else "fraction of positives"
        name_ece = f"{name}: ECE {value:.4f}" if value is not None else name
        top.set(title=name_ece, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1))
        top.legend(loc="upper left", fontsize=8)
        bottom.bar(edges[:-1], data["count"], width=width, align="edge", edgecolor="k", color="grey")
        bottom.set(xlabel="confidence" if scheme == "top_label" else "P(y=1)", ylabel="samples")
    fig.suptitle(title or f"reliability ({scheme}, {n_bins} bins)")
    return _save(fig, path)


def plot_group_bars(values: Mapping[str, Mapping[str, float | None]], path: str | os.PathLike,
                    title: str | None = None, ylabel: str | None = None) -> Path:
    """Grouped bars: one colour per series, one slot per group; undefined (None) values are marked 'n/a'."""
    groups = list(dict.fromkeys(g for series in values.values() for g in series))
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(groups) * max(1, len(values))), 4))
    width = 0.8 / max(1, len(values))
    x = np.arange(len(groups))
    for i, (name, series) in enumerate(values.items()):
        heights = [series.get(g) for g in groups]
        pos = x + (i - (len(values) - 1) / 2) * width
        ax.bar(pos, [h if h is not None else 0.0 for h in heights], width=width, label=name)
        for xp, h in zip(pos, heights):
            if h is None:
                ax.text(xp, 0.0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set(title=title or "", ylabel=ylabel or "")
    ax.legend(fontsize=8)
    return _save(fig, path)
