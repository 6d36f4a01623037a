"""Stage 1 losses: pairwise subgroup Sinkhorn, subgroup-vs-batch Sinkhorn, preservation of the CLIP feature."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sinkhorn import BatchedSinkhorn, subgroup_indices


def pairwise_terms(sinkhorn: BatchedSinkhorn, features: torch.Tensor, groups: dict, truncate: bool):
    """Sinkhorn divergence of every pair i < j of ``groups`` ({key: row indices}) -> (keys [(i, j)], terms [P]).

    ``truncate``: both sides cut to their first min(n_i, n_j) rows in batch order (the upstream form); otherwise the
    whole groups (exact, default). Every distinct cloud is gathered once and its self problem solved once.
    """
    ids = list(groups)
    keys = [(i, j) for a, i in enumerate(ids) for j in ids[a + 1:]]
    if not keys:
        return [], features.new_zeros(0)
    clouds: dict = {}  # cloud key -> position; a cloud is (group, number of leading rows)

    def cloud(group, rows: int) -> int:
        return clouds.setdefault((group, rows), len(clouds))

    pairs = []
    for i, j in keys:
        m = min(groups[i].numel(), groups[j].numel()) if truncate else None
        pairs.append((cloud(i, m or groups[i].numel()), cloud(j, m or groups[j].numel())))
    order = torch.cat([groups[g][:rows] for g, rows in clouds])
    return keys, sinkhorn.stacked(features[order], [rows for _, rows in clouds], pairs)


class PairwiseFairnessLoss(nn.Module):
    """Mean Sinkhorn divergence over every pair of subgroups with >= ``min_samples_per_subgroup`` rows.

    forward(features [B,D], subgroups [B] (-1 = unknown, ignored)) -> (loss [], {(i, j): term []})
    """

    def __init__(self, sinkhorn: BatchedSinkhorn, num_subgroups: int = 8, min_samples_per_subgroup: int = 2,
                 truncate: bool = False):
        super().__init__()
        self.sinkhorn, self.num_subgroups = sinkhorn, num_subgroups
        self.min_samples, self.truncate = min_samples_per_subgroup, truncate

    def forward(self, features: torch.Tensor, subgroups: torch.Tensor):
        groups = subgroup_indices(subgroups, self.num_subgroups, self.min_samples)
        keys, terms = pairwise_terms(self.sinkhorn, features, groups, self.truncate)
        if not keys:
            return features.new_zeros(()), {}
        return terms.mean(), dict(zip(keys, terms))


class FairnessLoss(nn.Module):
    """Mean over subgroups (>= ``min_samples_per_subgroup`` rows) of Sinkhorn(subgroup, reference).

    The reference is the detached batch (gradient flows through the subgroup side only). ``reference='batch'``
    (default): the whole batch with uniform weights (one cloud shared by every subgroup's problem).
    ``reference='subsample'`` (upstream): n_k rows of the batch drawn with ``torch.randperm`` on the global CPU
    generator (the whole batch when n_k equals its size).
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
        batch, keys = features.shape[0], list(groups)
        refs, pairs, whole = [], [], None  # refs: row indices of each reference cloud
        for a, k in enumerate(keys):
            if self.reference == "subsample" and groups[k].numel() < batch:
                refs.append(torch.randperm(batch)[: groups[k].numel()].to(features.device))
                pairs.append((a, len(keys) + len(refs) - 1))
                continue
            if whole is None:
                refs.append(torch.arange(batch, device=features.device))
                whole = len(keys) + len(refs) - 1
            pairs.append((a, whole))
        points = torch.cat([features[torch.cat([groups[k] for k in keys])], features.detach()[torch.cat(refs)]])
        sizes = [groups[k].numel() for k in keys] + [r.numel() for r in refs]
        terms = self.sinkhorn.stacked(points, sizes, pairs)
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


def build_stage1_loss(loss_cfg) -> Stage1Loss:
    """Stage 1 loss from the ``loss`` config section."""
    sinkhorn = BatchedSinkhorn(loss_cfg.sinkhorn_blur, 2, loss_cfg.sinkhorn_scaling, loss_cfg.diameter,
                               compile=loss_cfg.compile)
    return Stage1Loss(sinkhorn, loss_cfg.w_pairwise, loss_cfg.w_global, loss_cfg.w_preserve, loss_cfg.num_subgroups,
                      loss_cfg.min_samples_per_subgroup, loss_cfg.truncate, loss_cfg.reference)
