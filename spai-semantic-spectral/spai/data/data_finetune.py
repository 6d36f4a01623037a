"""SPAI CSV datasets, training augmentations (upstream's order and ranges, torch RNG), test transforms, loaders."""
from __future__ import annotations

import io
import math
from pathlib import Path

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from common_utils.data import SpaiRow, load_image, read_spai_csv
from common_utils.train import build_loader as engine_loader
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, RandomSampler, SequentialSampler


class CSVDataset(Dataset):
    """Rows of a SPAI CSV -> (image tensor, label, row index)."""

    def __init__(self, rows: list[SpaiRow], transform):
        self.rows, self.transform = rows, transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        return self.transform(load_image(row.image)), float(row.label), i


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(()))


def _chance(p: float) -> bool:
    return p > 0 and float(torch.rand(())) < p


def rotate_crop_border(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate a square ``[C, S, S]`` image by ``angle`` degrees, keep the largest centred square free of the
    rotation's empty corners (side S / (|cos| + |sin|), less a pixel each side that bilinear interpolation would
    mix with them) and resize it back to S: albumentations' ``Rotate(crop_border=True)`` followed by ``Resize``."""
    size = x.shape[-1]
    rad = math.radians(angle)
    c, s = abs(math.cos(rad)), abs(math.sin(rad))
    side = size if min(c, s) < 1e-9 else max(1, math.floor(size / (c + s)) - 2)
    rotated = TF.rotate(x, angle, interpolation=T.InterpolationMode.BILINEAR)
    return TF.resize(TF.center_crop(rotated, [side, side]), [size, size], antialias=True)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of a uint8 ``[3, H, W]`` image with Pillow (libjpeg, 4:2:0), as albumentations' OpenCV one."""
    buf = io.BytesIO()
    Image.fromarray(x.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        return TF.pil_to_tensor(img.convert("RGB"))


def blur_kernel_size(low: int, high: int) -> int:
    """albumentations' draw (1.4): uniform in [low, high]; an even size becomes the next odd one."""
    k = int(torch.randint(low, high + 1, ()))
    return k if k % 2 else k + 1


class TrainTransform:
    """PIL -> [V, 3, S, S] in [0, 1]: V independently augmented views, each one patch for the model.

    Each view follows upstream's order (``STEPS``) on 8-bit pixels: crop (RandomResizedCrop, or a native-scale
    random crop with reflect padding), horizontal / vertical flip, rotation (``AUG.ROTATION_MODE``), Gaussian blur
    (kernel 3-9, sigma 0.01-0.5), Gaussian noise (variance 10-50 on 0-255), colour jitter, JPEG (quality 50-100)
    last. All randomness comes from torch's RNG.
    """

    STEPS = ("crop", "hflip", "vflip", "rotate", "blur", "noise", "color_jitter", "jpeg")

    def __init__(self, cfg):
        self.aug, self.size, self.views = cfg.AUG, cfg.DATA.IMG_SIZE, cfg.DATA.AUGMENTED_VIEWS
        a = cfg.AUG
        self.crop = (T.RandomResizedCrop(self.size, scale=(a.MIN_CROP_AREA, a.MAX_CROP_AREA), antialias=True)
                     if a.RESIZED_CROP else T.RandomCrop(self.size, pad_if_needed=True, padding_mode="reflect"))
        self.jitter = T.ColorJitter(0.2, 0.2, 0.2, 0.05)

    def step(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Apply step ``name`` (with its probability) to a uint8 ``[3, H, W]`` view."""
        a = self.aug
        if name == "crop":
            return self.crop(x)
        if name == "hflip":
            return TF.horizontal_flip(x) if _chance(a.HORIZONTAL_FLIP_PROB) else x
        if name == "vflip":
            return TF.vertical_flip(x) if _chance(a.VERTICAL_FLIP_PROB) else x
        if name == "rotate":
            if not _chance(a.ROTATION_PROB):
                return x
            if a.ROTATION_MODE == "right_angle":
                return torch.rot90(x, int(torch.randint(1, 4, ())), dims=(-2, -1))
            return rotate_crop_border(x, _uniform(-a.ROTATION_DEGREES, a.ROTATION_DEGREES))
        if name == "blur":
            if not _chance(a.GAUSSIAN_BLUR_PROB):
                return x
            k, sigma = blur_kernel_size(*a.GAUSSIAN_BLUR_LIMIT), _uniform(*a.GAUSSIAN_BLUR_SIGMA)
            return TF.gaussian_blur(x, [k, k], [sigma, sigma])
        if name == "noise":
            if not _chance(a.GAUSSIAN_NOISE_PROB):
                return x
            sigma = math.sqrt(_uniform(*a.GAUSSIAN_NOISE_VAR))
            return (x.float() + torch.randn(x.shape) * sigma).round().clamp(0, 255).to(torch.uint8)
        if name == "color_jitter":
            return self.jitter(x) if _chance(a.COLOR_JITTER) else x
        if name == "jpeg":
            if not _chance(a.JPEG_COMPRESSION_PROB):
                return x
            return jpeg(x, int(torch.randint(a.JPEG_MIN_QUALITY, a.JPEG_MAX_QUALITY + 1, ())))
        raise KeyError(name)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.STEPS:
            x = self.step(name, x)
        return TF.to_dtype(x, torch.float32, scale=True)

    def __call__(self, img):
        x = TF.pil_to_tensor(img)
        return torch.stack([self.view(x) for _ in range(self.views)])


class EvalTransform:
    """PIL -> [3, H, W] in [0, 1] at original resolution; optional resize so the longest side is
    ``resize_to`` (aspect kept); zero-padded (centred) to at least one patch. ``perturb`` (8-bit PIL -> PIL,
    e.g. :class:`spai.robustness.Perturbation`) is applied first."""

    def __init__(self, patch_size: int, resize_to: int | None = None, perturb=None):
        self.patch_size, self.resize_to, self.perturb = patch_size, resize_to, perturb

    def __call__(self, img):
        if self.perturb is not None:
            img = self.perturb(img)
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
    """Rows of a SPAI CSV; relative paths resolve against ``root``, by default the CSV's own folder."""
    return read_spai_csv(csv_path, root=root or None, split=split)


def build_loader(rows, transform, batch_size, ctx, cfg, train: bool, seed: int = 0, collate=None,
                 prefetch: int | None = None):
    """``common_utils.train.build_loader`` with a DistributedSampler under DDP; training shuffles from
    (seed, epoch) via :func:`set_loader_epoch` and drops the last incomplete batch."""
    dataset = CSVDataset(rows, transform)
    if ctx.distributed:
        sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=train, seed=seed, drop_last=train)
    elif train:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return engine_loader(dataset, batch_size, ctx, num_workers=cfg.DATA.NUM_WORKERS, sampler=sampler,
                         drop_last=train, collate_fn=collate, prefetch_factor=prefetch)


def set_loader_epoch(loader, seed: int, epoch: int) -> None:
    """Shuffle order from (seed, epoch) only, so a resumed run sees the same order."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler):
        sampler.generator.manual_seed(seed * 100003 + epoch)
