"""Stage 1 losses: pairwise subgroup Sinkhorn, subgroup-vs-batch Sinkhorn, preservation of the CLIP feature."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sinkhorn import BatchedSinkhorn, subgroup_indices


def pairwise_clouds(features: torch.Tensor, groups: dict[int, torch.Tensor], truncate: bool):
    """All pairs i<j of ``groups``: keys [(i, j)], x clouds, y clouds. ``truncate``: both sides cut to their first
    min(n_i, n_j) rows in batch order (the upstream form); otherwise the whole groups (exact, default)."""
    keys, xs, ys = [], [], []
    ids = sorted(groups)
    for a, i in enumerate(ids):
        for j in ids[a + 1:]:
            gi, gj = groups[i], groups[j]
            if truncate:
                m = min(gi.numel(), gj.numel())
                gi, gj = gi[:m], gj[:m]
            keys.append((i, j))
            xs.append(features[gi])
            ys.append(features[gj])
    return keys, xs, ys


class PairwiseFairnessLoss(nn.Module):
    """Mean Sinkhorn divergence over every pair of subgroups with >= ``min_samples_per_subgroup`` rows.

    forward(features [B,D], subgroups [B] (-1 = unknown, ignored)) -> (loss [], {(i, j): term [] })
    """

    def __init__(self, sinkhorn: BatchedSinkhorn, num_subgroups: int = 8, min_samples_per_subgroup: int = 2,
                 truncate: bool = False):
        super().__init__()
        self.sinkhorn, self.num_subgroups = sinkhorn, num_subgroups
        self.min_samples, self.truncate = min_samples_per_subgroup, truncate

    def forward(self, features: torch.Tensor, subgroups: torch.Tensor):
        groups = subgroup_indices(subgroups, self.num_subgroups, self.min_samples)
        keys, xs, ys = pairwise_clouds(features, groups, self.truncate)
        if not keys:
            return features.new_zeros(()), {}
        terms = self.sinkhorn(xs, ys)
        return terms.mean(), dict(zip(keys, terms))


class FairnessLoss(nn.Module):
    """Mean over subgroups (>= ``min_samples_per_subgroup`` rows) of Sinkhorn(subgroup, reference).

    The reference is the detached batch (gradient flows through the subgroup side only). ``reference='batch'``
    (default): the whole batch with uniform weights. ``reference='subsample'`` (upstream): n_k rows of the batch
    drawn with ``torch.randperm`` on the global CPU generator (the whole batch when n_k equals its size).
    forward(features [B,D], subgroups [B]) -> (loss [], {k: term []})
    """

    def __init__(self, sinkhorn: BatchedSinkhorn, num_subgroups: int = 8, min_samples_per_subgroup: int = 2,
                 reference: str = "batch"):
        super().__init__()
        if reference not in ("batch", "subsample"):
            raise ValueError(f"reference must be 'batch' or 'subsample', got {reference!r}")
        self.sinkhorn, self.num_subgroups = sinkhorn, num_subgroups
        self.min_samples, self.reference = min_samples_per_subgroup, reference

    def forward(self, features: torch.Tensor, subgroups: torch.Tensor):
        groups = subgroup_indices(subgroups, self.num_subgroups, self.min_samples)
        if not groups:
            return features.new_zeros(()), {}
        ref = features.detach()
        keys, xs, ys = [], [], []
        for k, idx in groups.items():
            if self.reference == "subsample" and idx.numel() < ref.shape[0]:
                ys.append(ref[torch.randperm(ref.shape[0])[: idx.numel()].to(ref.device)])
            else:
                ys.append(ref)
            keys.append(k)
            xs.append(features[idx])
        terms = self.sinkhorn(xs, ys)
        return terms.mean(), dict(zip(keys, terms))


def preservation_loss(adapted: torch.Tensor, clip_feat: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine similarity between the adapted and the CLIP feature ([B,D] each) -> []."""
    return 1.0 - F.cosine_similarity(adapted, clip_feat, dim=-1).mean()


class Stage1Loss(nn.Module):
    """w_pairwise * PairwiseFairnessLoss + w_global * FairnessLoss + w_preserve * preservation_loss.

    forward(outputs of ``FairnessAdapter``, subgroups [B]) -> dict(loss, loss_pairwise, loss_global, loss_preserve)
    """

    def __init__(self, sinkhorn: BatchedSinkhorn, w_pairwise: float, w_global: float, w_preserve: float,
                 num_subgroups: int = 8, min_samples_per_subgroup: int = 2, truncate: bool = False,
                 reference: str = "batch"):
        super().__init__()
        self.pairwise = PairwiseFairnessLoss(sinkhorn, num_subgroups, min_samples_per_subgroup, truncate)
        self.global_ = FairnessLoss(sinkhorn, num_subgroups, min_samples_per_subgroup, reference)
        self.w = (w_pairwise, w_global, w_preserve)

    def forward(self, out: dict, subgroups: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = out["final_features_norm"]
        pair, _ = self.pairwise(feat, subgroups)
        glob, _ = self.global_(feat, subgroups)
        pres = preservation_loss(feat, out["clip_features"])
        total = self.w[0] * pair + self.w[1] * glob + self.w[2] * pres
        return {"loss": total, "loss_pairwise": pair, "loss_global": glob, "loss_preserve": pres}
