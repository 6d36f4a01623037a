"""Rows (``image_lists``) -> image datasets (CLIP preprocessing, no augmentation) or cached CLIP-feature datasets.

Every item is a dict: 'label' (0 real / 1 fake, -1 none), 'subgroup' (gender*4 + race, PG-FDD order; -1 unknown),
'gender', 'race', 'index', plus either 'image' [3,S,S] or the cached 'clip_feat' [D] and 'clip_tokens' [K,D].
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from common_utils.data import FairnessRow, FeatureCache, load_image
from torch.utils.data import Dataset
from torchvision import transforms

from ..model.clip_backbone import CLIP_MEAN, CLIP_STD, FrozenCLIPImageEncoder


def clip_transform(image_size: int) -> transforms.Compose:
    """CLIP preprocessing (both stages): bicubic resize of the short side, center crop, CLIP mean/std."""
    return transforms.Compose([
        transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(CLIP_MEAN, CLIP_STD),
    ])


def _meta(row: FairnessRow, index: int) -> dict:
    return {"label": row.label, "subgroup": row.subgroup, "gender": row.gender, "race": row.race, "index": index}


class FairnessImageDataset(Dataset):
    """Images through ``transform`` (deterministic: the frozen CLIP sees the same input every epoch)."""

    def __init__(self, rows: list[FairnessRow], transform):
        self.rows, self.transform = rows, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        return {"image": self.transform(load_image(row.img_path)), **_meta(row, i)}


class CachedFeatureDataset(Dataset):
    """Rows paired with cached CLIP outputs ``features`` [N, 1+K, D] (index 0 = global feature, 1.. = tokens)."""

    def __init__(self, rows: list[FairnessRow], features: torch.Tensor):
        if len(rows) != features.shape[0]:
            raise ValueError(f"{len(rows)} rows but {features.shape[0]} cached features")
        self.rows, self.features = rows, features

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        f = self.features[i].clone()  # copy out of the memmap
        return {"clip_feat": f[0], "clip_tokens": f[1:], **_meta(self.rows[i], i)}


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over the module's tensors: identifies the CLIP weights (random init included) for the cache key."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def split_clip_output(feat: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
    """Stack the encoder's outputs as one cache entry [B, 1+K, D]."""
    return feat.unsqueeze(1) if tokens is None else torch.cat([feat.unsqueeze(1), tokens], dim=1)


def cached_dataset(rows: list[FairnessRow], encoder: FrozenCLIPImageEncoder, transform, cache_dir: str,
                   image_size: int, device: torch.device, batch_size: int = 32) -> CachedFeatureDataset:
    """CLIP features and tokens of ``rows`` computed once (unaugmented input) and memory-mapped from ``cache_dir``."""
    fingerprint = {"image_size": image_size, "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
                   "resize": "bicubic+center_crop", "token_layers": encoder.token_layers,
                   "weights": weights_digest(encoder)}
    cache = FeatureCache(cache_dir, model_id=f"clip-{type(encoder.visual).__name__}", fingerprint=fingerprint)

    def extract(paths: list[Path]) -> torch.Tensor:
        images = torch.stack([transform(load_image(p)) for p in paths]).to(device)
        return split_clip_output(*encoder(images)).cpu()

    return CachedFeatureDataset(rows, cache.load_or_build([r.img_path for r in rows], extract, batch_size))
