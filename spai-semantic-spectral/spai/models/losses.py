"""Classification and consistency losses (labels: 0 real, 1 fake; targets may be soft after mixup)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Binary focal loss on logits: mean of -alpha_t (1 - p_t)^gamma log p_t (Lin et al. 2017).

    alpha weighs the positive (fake) class, 1 - alpha the real one; soft targets interpolate both.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0):
        super().__init__()
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = logits.reshape(-1).float(), targets.reshape(-1).float()
        ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        alpha_t = self.alpha * targets + (1 - self.alpha) * (1 - targets)
        return (alpha_t * (1 - p_t) ** self.gamma * ce).mean()


def _pairwise_cosine_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(a, b, dim=-1)).mean()


class SemanticConsistencyLoss(nn.Module):
    """Semantic coherence across frequency components: mean over the pairs (orig, low), (orig, high),
    (low, high) of 1 - cos of the per-patch semantic summaries [P, D]. 0 when all agree, 2 when opposite."""

    def forward(self, semantic_orig, semantic_low, semantic_high):
        return (_pairwise_cosine_gap(semantic_orig, semantic_low) + _pairwise_cosine_gap(semantic_orig, semantic_high)
                + _pairwise_cosine_gap(semantic_low, semantic_high)) / 3


class FrequencyConsistencyLoss(nn.Module):
    """Keep the relations between patches in the frequency components: the patch-to-patch cosine-similarity
    matrices of the low- and high-pass features [P, D] should match the original's (mean squared
    difference, averaged over the two). Invariant to per-patch scaling; needs at least 2 patches."""

    @staticmethod
    def _relations(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float(), dim=-1)
        return x @ x.T

    def forward(self, freq_features_orig, freq_features_low, freq_features_high):
        if freq_features_orig.shape[0] < 2:
            raise ValueError("FrequencyConsistencyLoss needs at least 2 patches")
        r = self._relations(freq_features_orig)
        return (F.mse_loss(self._relations(freq_features_low), r)
                + F.mse_loss(self._relations(freq_features_high), r)) / 2


class EnhancedSemanticSpectralLoss(nn.Module):
    """focal + semantic_weight * semantic consistency + frequency_weight * frequency consistency.

    forward(logits [B, 1], targets [B], aux from ``PatchBasedMFViT(..., return_aux=True)``) -> dict of
    ``loss`` (the total) and its parts. A term whose weight is 0 is not computed.
    """

    def __init__(self, focal_alpha=0.25, focal_gamma=2.0, semantic_weight=0.1, frequency_weight=0.05):
        super().__init__()
        self.focal = FocalLoss(focal_alpha, focal_gamma)
        self.semantic, self.frequency = SemanticConsistencyLoss(), FrequencyConsistencyLoss()
        self.semantic_weight, self.frequency_weight = semantic_weight, frequency_weight

    def forward(self, logits, targets, aux=None) -> dict:
        out = {"focal": self.focal(logits, targets)}
        total = out["focal"]
        if self.semantic_weight:
            if not aux or "semantic" not in aux:
                raise ValueError("semantic consistency weight > 0 needs MODEL.FRE.USE_FREQUENCY_AWARE_ATTENTION")
            s = aux["semantic"]
            out["semantic"] = self.semantic(s["orig"], s["low"], s["high"])
            total = total + self.semantic_weight * out["semantic"]
        if self.frequency_weight:
            f = aux["frequency"]
            out["frequency"] = self.frequency(f["orig"], f["low"], f["high"])
            total = total + self.frequency_weight * out["frequency"]
        out["loss"] = total
        return out


class BCELoss(nn.Module):
    """Upstream SPAI's loss, with the same dict interface."""

    def __init__(self):
        super().__init__()
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits, targets, aux=None) -> dict:
        loss = self.bce(logits.reshape(-1).float(), targets.reshape(-1).float())
        return {"bce": loss, "loss": loss}


def build_loss(cfg) -> nn.Module:
    t = cfg.TRAIN
    if t.LOSS == "bce":
        return BCELoss()
    return EnhancedSemanticSpectralLoss(t.FOCAL_ALPHA, t.FOCAL_GAMMA, t.SEMANTIC_CONSISTENCY_WEIGHT,
                                        t.FREQUENCY_CONSISTENCY_WEIGHT)
