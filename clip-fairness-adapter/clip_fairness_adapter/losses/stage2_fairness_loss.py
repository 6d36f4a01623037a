"""Stage 2 fairness loss: subgroup alignment within the real class and within the fake class."""
from __future__ import annotations

import torch
from torch import nn

from .sinkhorn import BatchedSinkhorn, subgroup_indices


class Stage2FairnessLoss(nn.Module):
    """For label 0 and 1: if the class has >= ``min_class_samples`` rows, pairwise Sinkhorn between its subgroups
    (>= ``min_samples_per_subgroup`` rows each); class loss = mean over its pairs; loss = mean over classes with
    >= 1 pair (0 if none). The pairs of both classes are one stacked Sinkhorn problem (each (class, subgroup) cloud
    gathered once, its self term solved once).

    forward(features [B,D] (normalised fused feature), labels [B], subgroups [B]) ->
      (loss [], info: {'real'|'fake': class loss [], 'real_pairs'|'fake_pairs': int, (cls, i, j): term []})
    """

    def __init__(self, sinkhorn: BatchedSinkhorn, num_subgroups: int = 8, min_samples_per_subgroup: int = 2,
                 min_class_samples: int = 4, truncate: bool = False):
        super().__init__()
        self.sinkhorn, self.num_subgroups = sinkhorn, num_subgroups
        self.min_samples, self.min_class, self.truncate = min_samples_per_subgroup, min_class_samples, truncate

    def forward(self, features: torch.Tensor, labels: torch.Tensor, subgroups: torch.Tensor):
        keys, pairs, clouds = [], [], {}  # clouds: (class, subgroup, leading rows) -> position
        rows_of: dict = {}
        for label, name in ((0, "real"), (1, "fake")):
            rows = torch.nonzero(labels == label, as_tuple=True)[0]
            if rows.numel() < self.min_class:
                continue
            groups = {g: rows[idx] for g, idx in subgroup_indices(subgroups[rows], self.num_subgroups,
                                                                   self.min_samples).items()}
            ids = list(groups)
            for a, i in enumerate(ids):
                for j in ids[a + 1:]:
                    m = min(groups[i].numel(), groups[j].numel())
                    n_i, n_j = (m, m) if self.truncate else (groups[i].numel(), groups[j].numel())
                    pairs.append((clouds.setdefault((name, i, n_i), len(clouds)),
                                  clouds.setdefault((name, j, n_j), len(clouds))))
                    keys.append((name, i, j))
            rows_of.update({(name, g): idx for g, idx in groups.items()})
        info: dict = {"real_pairs": 0, "fake_pairs": 0}
        if not keys:
            return features.new_zeros(()), info
        order = torch.cat([rows_of[(name, g)][:n] for name, g, n in clouds])
        terms = self.sinkhorn.stacked(features[order], [n for _, _, n in clouds], pairs)
        class_losses = []
        for name in ("real", "fake"):
            sel = [t for key, t in zip(keys, terms) if key[0] == name]
            info[f"{name}_pairs"] = len(sel)
            if sel:
                info[name] = torch.stack(sel).mean()
                class_losses.append(info[name])
        info.update(zip(keys, terms))
        return torch.stack(class_losses).mean(), info


def build_fair_loss(loss_cfg) -> Stage2FairnessLoss:
    """Stage 2 fairness loss from the ``loss`` config section."""
    sinkhorn = BatchedSinkhorn(loss_cfg.sinkhorn_blur, 2, loss_cfg.sinkhorn_scaling, loss_cfg.diameter,
                               compile=loss_cfg.compile)
    return Stage2FairnessLoss(sinkhorn, loss_cfg.num_subgroups, loss_cfg.min_samples_per_subgroup,
                              loss_cfg.min_class_samples, loss_cfg.truncate)
