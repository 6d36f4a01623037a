"""Manifest rows (one per frame, with its video), the design's transforms and the dataset the loaders read.

Manifest CSV: ``image_path,label,dataset,split[,video,method]`` (label 0 = real, 1 = fake). ``video`` names the
video a frame was extracted from (``manifests.py`` writes it); without the column every frame is its own video.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import torch
from common_utils.data import DataFormatError, load_image, read_manifest
from torch.utils.data import Dataset
from torchvision import transforms

from ..config import resolve_path

SPLITS = ("train", "val", "test")


class Frame(NamedTuple):
    """One manifest row: an image (a video frame or a still) with its label and video."""

    image_path: Path
    label: int  # 0 real, 1 fake
    dataset: str
    split: str
    line: int
    video: str  # video id; the image path itself when the manifest has no video column
    method: str  # manipulation method ("real" for reals); the dataset when the manifest has no method column


def _optional_columns(csv_path: Path) -> dict[int, dict[str, str]]:
    """{line: {video, method}} for the optional columns a manifest may carry (empty when it has neither)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        if not {"video", "method"} & set(header):
            return {}
        reader.fieldnames = header
        out = {}
        for row in reader:
            out[reader.line_num] = {k: (row.get(k) or "").strip() for k in ("video", "method")}
        return out


def read_split(cfg, split: str) -> list[Frame]:
    """Rows of one split's manifest; bad rows raise DataFormatError naming the file and line."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    csv_path = resolve_path(cfg.data[f"{split}_manifest"], cfg.data.root)
    rows = read_manifest(csv_path, data_root=cfg.data.root, check_files=cfg.data.check_files)
    if not rows:
        raise DataFormatError(csv_path, "no rows")
    wrong = [r for r in rows if r.split != split]
    if wrong:
        raise DataFormatError(csv_path, f"split {wrong[0].split!r} in the {split} manifest", line=wrong[0].line)
    extra = _optional_columns(csv_path)
    frames = []
    for r in rows:
        more = extra.get(r.line, {})
        if extra and not more.get("video"):
            raise DataFormatError(csv_path, "empty video (the manifest has a video column: every row needs one)",
                                  line=r.line)
        frames.append(Frame(r.image_path, r.label, r.dataset, r.split, r.line, more.get("video") or str(r.image_path),
                            more.get("method") or r.dataset))
    return frames


def has_videos(rows) -> bool:
    """Whether some video holds more than one frame (then video-level metrics differ from frame-level ones)."""
    videos = [r.video for r in rows]
    return len(set(videos)) < len(videos)


def relative_path(path, root) -> str:
    """Path as written relative to the data root when it lies below it (stable key for joins)."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


class PadCenterCrop:
    """Centre crop to size x size, reflect-padding images smaller than that."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img):
        w, h = img.size
        pad_w, pad_h = max(0, self.size - w), max(0, self.size - h)
        if pad_w or pad_h:
            img = transforms.functional.pad(img, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2],
                                            padding_mode="reflect")
        return transforms.functional.center_crop(img, [self.size, self.size])


def build_transforms(cfg, train: bool):
    """Resize (or crop) to input_size (``model.test_size`` for evaluation when set), design augmentations for
    training, ImageNet normalisation -> [3, S, S].

    data.preprocess: `resize` = bicubic resize to input_size (the design; its data are 256 px crops already);
    `crop` = random (train) / centre (eval) crop at native resolution, reflect-padded when smaller, which keeps
    pixel-level generator fingerprints that resizing would erase. Blur sits in RandomApply(p=augment.blur_prob);
    the design's bare GaussianBlur is blur_prob=1.0.
    """
    size = cfg.model.input_size if train else int(cfg.model.get("test_size") or cfg.model.input_size)
    if cfg.data.preprocess == "resize":
        ops = [transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC, antialias=True)]
    elif cfg.data.preprocess == "crop":
        ops = [transforms.RandomCrop(size, pad_if_needed=True, padding_mode="reflect") if train else
               PadCenterCrop(size)]
    else:
        raise ValueError(f"data.preprocess must be 'resize' or 'crop', got {cfg.data.preprocess!r}")
    if train:  # augmentations switched off in the config (identity parameters) are left out
        a = cfg.augment
        if a.hflip > 0:
            ops.append(transforms.RandomHorizontalFlip(p=a.hflip))
        if any(a.color_jitter):
            ops.append(transforms.ColorJitter(*a.color_jitter))
        if a.affine_degrees or any(a.affine_translate) or tuple(a.affine_scale) != (1.0, 1.0):
            ops.append(transforms.RandomAffine(a.affine_degrees, translate=tuple(a.affine_translate),
                                               scale=tuple(a.affine_scale)))
        if a.blur_prob > 0:
            ops.append(transforms.RandomApply([transforms.GaussianBlur(a.blur_kernel, sigma=tuple(a.blur_sigma))],
                                              p=a.blur_prob))
    ops += [transforms.ToTensor(), transforms.Normalize(list(cfg.model.mean), list(cfg.model.std))]
    return transforms.Compose(ops)


class ManifestDataset(Dataset):
    """Rows (need `.image_path`, `.label`) -> (image [3, S, S], label float (1 = fake), row index).

    ``cache``: keep every decoded image in memory after its first use (``data.cache_decoded``; small datasets only).
    """

    def __init__(self, rows, transform, cache: bool = False):
        self.rows, self.transform = rows, transform
        self.cache = {} if cache else None

    def __len__(self):
        return len(self.rows)

    def _image(self, i):
        if self.cache is None:
            return load_image(self.rows[i].image_path)
        if i not in self.cache:
            self.cache[i] = load_image(self.rows[i].image_path)
        return self.cache[i]

    def __getitem__(self, i):
        return self.transform(self._image(i)), torch.tensor(float(self.rows[i].label)), i
