"""Stage 2 fairness loss: subgroup alignment within the real class and within the fake class."""
from __future__ import annotations

import torch
from torch import nn

from .fairness_loss import pairwise_clouds
from .sinkhorn import BatchedSinkhorn, subgroup_indices


class Stage2FairnessLoss(nn.Module):
    """For label 0 and 1: if the class has >= ``min_class_samples`` rows, pairwise Sinkhorn between its subgroups
    (>= ``min_samples_per_subgroup`` rows each); class loss = mean over its pairs; loss = mean over classes with
    >= 1 pair (0 if none). All pairs of both classes go through one batched Sinkhorn call.

    forward(features [B,D] (normalised fused feature), labels [B], subgroups [B]) ->
      (loss [], info: {'real'|'fake': class loss [], 'real_pairs'|'fake_pairs': int, (cls, i, j): term []})
    """

    def __init__(self, sinkhorn: BatchedSinkhorn, num_subgroups: int = 8, min_samples_per_subgroup: int = 2,
                 min_class_samples: int = 4, truncate: bool = False):
        super().__init__()
        self.sinkhorn, self.num_subgroups = sinkhorn, num_subgroups
        self.min_samples, self.min_class, self.truncate = min_samples_per_subgroup, min_class_samples, truncate

    def forward(self, features: torch.Tensor, labels: torch.Tensor, subgroups: torch.Tensor):
        keys, xs, ys = [], [], []
        for label, name in ((0, "real"), (1, "fake")):
            rows = torch.nonzero(labels == label, as_tuple=True)[0]
            if rows.numel() < self.min_class:
                continue
            groups = subgroup_indices(subgroups[rows], self.num_subgroups, self.min_samples)
            k, x, y = pairwise_clouds(features[rows], groups, self.truncate)
            keys += [(name, i, j) for i, j in k]
            xs += x
            ys += y
        info: dict = {"real_pairs": 0, "fake_pairs": 0}
        if not keys:
            return features.new_zeros(()), info
        terms = self.sinkhorn(xs, ys)
        class_losses = []
        for name in ("real", "fake"):
            sel = [t for key, t in zip(keys, terms) if key[0] == name]
            info[f"{name}_pairs"] = len(sel)
            if sel:
                info[name] = torch.stack(sel).mean()
                class_losses.append(info[name])
        info.update(zip(keys, terms))
        return torch.stack(class_losses).mean(), info
