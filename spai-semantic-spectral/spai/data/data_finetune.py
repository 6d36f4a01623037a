"""SPAI CSV datasets, augmentations (torchvision v2, torch RNG) and loaders."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from common_utils.data import SpaiRow, load_image, read_spai_csv
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler


class CSVDataset(Dataset):
    """Rows of a SPAI CSV -> (image tensor, label, row index)."""

    def __init__(self, rows: list[SpaiRow], transform):
        self.rows, self.transform = rows, transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        return self.transform(load_image(row.image)), float(row.label), i


class TrainTransform:
    """PIL -> [3, S, S * AUGMENTED_VIEWS] in [0, 1]: independently augmented views side by side."""

    def __init__(self, cfg):
        a, size = cfg.AUG, cfg.DATA.IMG_SIZE
        self.views = cfg.DATA.AUGMENTED_VIEWS
        crop = (T.RandomResizedCrop(size, scale=(a.MIN_CROP_AREA, a.MAX_CROP_AREA), antialias=True)
                if a.RESIZED_CROP else T.RandomCrop(size, pad_if_needed=True))
        ops = [T.PILToTensor(), crop, T.RandomHorizontalFlip(a.HORIZONTAL_FLIP_PROB),
               T.RandomVerticalFlip(a.VERTICAL_FLIP_PROB),
               T.RandomApply([T.RandomRotation(a.ROTATION_DEGREES)], p=a.ROTATION_PROB),
               T.RandomApply([T.JPEG((a.JPEG_MIN_QUALITY, a.JPEG_MAX_QUALITY))], p=a.JPEG_COMPRESSION_PROB),
               T.RandomApply([T.ColorJitter(0.2, 0.2, 0.2, 0.05)], p=a.COLOR_JITTER),
               T.ToDtype(torch.float32, scale=True),
               T.RandomApply([T.GaussianBlur(_odd_sizes(a.GAUSSIAN_BLUR_LIMIT), tuple(a.GAUSSIAN_BLUR_SIGMA))],
                             p=a.GAUSSIAN_BLUR_PROB),
               T.RandomApply([T.GaussianNoise(sigma=a.GAUSSIAN_NOISE_SIGMA, clip=True)], p=a.GAUSSIAN_NOISE_PROB)]
        self.transform = T.Compose(ops)

    def __call__(self, img):
        return torch.cat([self.transform(img) for _ in range(self.views)], dim=-1)


def _odd_sizes(limit) -> int:
    """torchvision blurs with one odd kernel size; use the largest odd size in the configured range."""
    k = int(limit[1])
    return k if k % 2 else k - 1


class EvalTransform:
    """PIL -> [3, H, W] in [0, 1] at original resolution; optional resize so the longest side is
    ``resize_to`` (aspect kept); zero-padded (centred) to at least one patch."""

    def __init__(self, patch_size: int, resize_to: int | None = None):
        self.patch_size, self.resize_to = patch_size, resize_to

    def __call__(self, img):
        x = TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)
        if self.resize_to:
            h, w = x.shape[-2:]
            scale = self.resize_to / max(h, w)
            x = TF.resize(x, [max(1, round(h * scale)), max(1, round(w * scale))], antialias=True)
        h, w = x.shape[-2:]
        ph, pw = max(0, self.patch_size - h), max(0, self.patch_size - w)
        if ph or pw:
            x = TF.pad(x, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0.0)
        return x.clamp(0, 1)


def collate_list(batch):
    """Images of different sizes stay a list: (list of [3, H, W], labels [B], row indices [B])."""
    images, labels, idx = zip(*batch)
    return list(images), torch.tensor(labels), torch.tensor(idx)


def read_rows(csv_path: str | Path, root: str | Path | None, split: str | None) -> list[SpaiRow]:
    return read_spai_csv(csv_path, root=root or None, split=split)


def build_loader(rows, transform, batch_size, ctx, cfg, train: bool, seed: int = 0, collate=None,
                 prefetch: int | None = None) -> DataLoader:
    """Loader with a DistributedSampler under DDP; training shuffles from (seed, epoch) via set_epoch."""
    dataset = CSVDataset(rows, transform)
    if ctx.distributed:
        sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=train, seed=seed, drop_last=train)
    elif train:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    workers = cfg.DATA.NUM_WORKERS
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=cfg.DATA.PIN_MEMORY and ctx.device.type == "cuda", drop_last=train,
                      collate_fn=collate, prefetch_factor=(prefetch or 2) if workers else None)


def set_loader_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Shuffle order from (seed, epoch) only, so a resumed run sees the same order."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler):
        sampler.generator.manual_seed(seed * 100003 + epoch)
