"""Paper-scale runs of the shipped configs' heads, losses, weighting and schedule on synthetic CLIP-like features.

``synthetic_features``: 768-d unit vectors (and K layer tokens) built like frozen CLIP features of faces: a strong
demographic structure (gender and race directions, as CLIP separates them), a weaker real/fake direction, and a
subgroup bias (the fake shift is weaker for some subgroups and the real class of some subgroups sits closer to the
fakes, so one threshold gives unequal FPRs). A logistic regression reaches ~0.9 train accuracy on them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from common_utils.data import SubgroupBalancedBatchSampler
from torch.utils.data import DataLoader, Dataset

FAKE_STRENGTH = (1.0, 1.0, 0.6, 0.7, 1.0, 0.9, 0.6, 0.7)  # per subgroup (PG-FDD order)
REAL_OFFSET = (0.0, -0.2, 0.5, 0.4, 0.1, -0.1, 0.6, 0.3)   # real-class shift towards the fakes, per subgroup


def synthetic_features(n: int, dim: int = 768, tokens: int = 4, seed: int = 0, signal: float = 0.14) -> dict:
    """{'clip_feat' [n,dim], 'clip_tokens' [n,tokens,dim], 'label' [n], 'subgroup' [n]} (directions fixed by dim)."""
    basis = torch.linalg.qr(torch.randn(dim, 16, generator=torch.Generator().manual_seed(1234)))[0].T  # [16,dim]
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 2, (n,), generator=g)
    subgroup = torch.randint(0, 8, (n,), generator=g)
    gender, race = subgroup // 4, subgroup % 4
    strength = torch.tensor(FAKE_STRENGTH)[subgroup]
    offset = torch.tensor(REAL_OFFSET)[subgroup]
    fake_coord = signal * torch.where(label == 1, strength, offset * 0.5 - 0.5)
    x = torch.randn(n, dim, generator=g) / dim ** 0.5  # content: unit-norm scale
    x = x + 0.5 * (2 * gender - 1).float()[:, None] * basis[0] + 0.5 * basis[1 + race] + fake_coord[:, None] * basis[6]
    feat = F.normalize(x, dim=-1)
    layers = [F.normalize(feat + (tokens - k) * 0.5 * torch.randn(n, dim, generator=g) / dim ** 0.5, dim=-1)
              for k in range(1, tokens)] + [feat]
    return {"clip_feat": feat, "clip_tokens": torch.stack(layers, 1), "label": label, "subgroup": subgroup}


class FeatureDataset(Dataset):
    def __init__(self, data: dict):
        self.data = data

    def __len__(self) -> int:
        return len(self.data["label"])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.data.items()}


def balanced_loader(data: dict, batch_size: int, groups: torch.Tensor, seed: int = 0):
    sampler = SubgroupBalancedBatchSampler(groups.tolist(), batch_size, seed=seed)
    return DataLoader(FeatureDataset(data), batch_sampler=sampler), sampler


def spread(features: torch.Tensor) -> float:
    """Mean distance of the (unit-norm) features from their mean: 0 when they have collapsed to one point."""
    return float((features - features.mean(0)).norm(dim=1).mean())
