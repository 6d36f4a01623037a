"""Baseline: logistic regression on the frozen (L2-normalised) CLIP feature, the same features Stage 2 reads."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from .common import gather, to_device


@torch.no_grad()
def clip_features(model, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """Normalised CLIP features [N,D] and labels [N] (through the cache when the loader yields cached items;
    gathered from every rank's shard in a distributed run)."""
    feats, labels = [], []
    for batch in loader:
        raw, _ = model.encode(to_device(batch, device))
        feats.append(F.normalize(raw.float(), dim=-1).cpu())
        labels.append(batch["label"])
    return gather(torch.cat(feats), device).numpy(), gather(torch.cat(labels), device).numpy()


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> LogisticRegression:
    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(features, labels)
