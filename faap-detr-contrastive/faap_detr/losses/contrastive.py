"""Score-ranked InfoNCE: the lowest-scoring images of a batch (anchors) are pulled toward the highest (positives)."""
import math

import torch
from torch import nn


def split_counts(n, top_k_percent, bottom_k_percent, min_samples, rounding="round"):
    """Sizes (n_top, n_bottom) of the positive and anchor sets for a batch of n.

    rounding="floor" is the design's own code (int() truncation: a batch of 7 gets 2 = 29% instead of 40%);
    "round" (default) takes the nearest integer. Both are raised to min_samples and split n//2 / rest if
    they would overlap."""
    if rounding not in ("floor", "round"):
        raise ValueError(f"rounding must be 'floor' or 'round', got {rounding!r}")
    to_int = math.floor if rounding == "floor" else (lambda v: math.floor(v + 0.5))
    n_top = max(min_samples, to_int(n * top_k_percent))
    n_bottom = max(min_samples, to_int(n * bottom_k_percent))
    if n_top + n_bottom > n:
        n_top = n // 2
        n_bottom = n - n_top
    return n_top, n_bottom


def _info_nce(z, rows, cols, temperature):
    """-mean_r [logsumexp_{c in cols, c != r} z_r.z_c/T - logsumexp_{j != r} z_r.z_j/T] for r in rows."""
    sim = z[rows] @ z.T / temperature  # [R,N]
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[torch.arange(len(rows)), rows] = True
    den = torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1)
    col_mask = torch.ones_like(self_mask)
    col_mask[:, cols] = False
    num = torch.logsumexp(sim.masked_fill(col_mask | self_mask, float("-inf")), dim=1)
    return -(num - den).mean()


class AdaptiveScoreContrastiveLoss(nn.Module):
    """Top `top_k_percent` of the batch by detection score = positives, bottom `bottom_k_percent` = anchors.

    forward(embeddings [N,D] L2-normalised, scores [N]) -> (loss, info). Scores only rank (no gradient).
    Batches with N < 2 * min_samples give a zero loss."""

    def __init__(self, temperature=0.1, top_k_percent=0.4, bottom_k_percent=0.4, min_samples=2, rounding="round"):
        super().__init__()
        self.temperature = temperature
        self.top_k_percent, self.bottom_k_percent = top_k_percent, bottom_k_percent
        self.min_samples = min_samples
        self.rounding = rounding

    def split(self, scores):
        """-> (positive indices, anchor indices): head and tail of the descending sort (lowest score last)."""
        n_top, n_bottom = split_counts(len(scores), self.top_k_percent, self.bottom_k_percent, self.min_samples,
                                       self.rounding)
        order = scores.detach().argsort(descending=True)
        return order[:n_top], order[len(order) - n_bottom:]

    def _info(self, scores, pos, anc):
        s = scores.detach().float()
        return {"n_positive": len(pos), "n_anchor": len(anc), "score_gap": (s[pos].mean() - s[anc].mean()).item(),
                "positive_indices": pos, "anchor_indices": anc}

    def forward(self, embeddings, scores):
        if len(scores) < 2 * self.min_samples:
            return embeddings.new_zeros(()), {"n_positive": 0, "n_anchor": 0, "score_gap": 0.0}
        pos, anc = self.split(scores)
        return _info_nce(embeddings, anc, pos, self.temperature), self._info(scores, pos, anc)


class BidirectionalScoreContrastiveLoss(AdaptiveScoreContrastiveLoss):
    """anchor_weight * (anchors -> positives) + positive_weight * (each positive -> the other positives)."""

    def __init__(self, temperature=0.1, top_k_percent=0.4, bottom_k_percent=0.4, anchor_weight=1.0,
                 positive_weight=0.3, min_samples=2, rounding="round"):
        super().__init__(temperature, top_k_percent, bottom_k_percent, min_samples, rounding)
        self.anchor_weight, self.positive_weight = anchor_weight, positive_weight

    def forward(self, embeddings, scores):
        if len(scores) < 2 * self.min_samples:
            zero = embeddings.new_zeros(())
            return zero, {"n_positive": 0, "n_anchor": 0, "score_gap": 0.0, "loss_a2p": 0.0, "loss_p2p": 0.0}
        pos, anc = self.split(scores)
        a2p = _info_nce(embeddings, anc, pos, self.temperature)
        p2p = _info_nce(embeddings, pos, pos, self.temperature)
        info = self._info(scores, pos, anc)
        info.update(loss_a2p=a2p.item(), loss_p2p=p2p.item())
        return self.anchor_weight * a2p + self.positive_weight * p2p, info
