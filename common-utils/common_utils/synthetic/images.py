"""Image building blocks shared by the synthetic image datasets.

Real content is cropped from the photographs bundled with scikit-image; "generated" content is the same kind of
crop passed through a generator-like process that leaves a known spectral fingerprint:

- ``tconv``: 2x down-sampling, then a stride-2 transposed convolution whose even and odd kernel phases have unequal
  gain (the checkerboard of deconvolution generators: a peak at the Nyquist frequency).
- ``nearest_blur``: 4x down-sampling, nearest-neighbour up-sampling and a Gaussian blur (blocks, missing high band).
- ``resynth``: re-synthesis from a 3x down-sampled copy by bicubic up-sampling plus a faint period-8 grid (the
  up-sampling grid of GAN decoders: peaks at 1/8 cycles/pixel).

Images are float32 arrays ``[H, W, 3]`` in [0, 1] until written as 8-bit PNG.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage, signal
from skimage import data as skdata

# Photographs shipped inside the scikit-image wheel (no download needed).
PHOTO_NAMES = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "brick", "grass", "gravel",
    "immunohistochemistry", "hubble_deep_field", "retina", "moon",
)
FAKE_PROCESSES = ("tconv", "nearest_blur", "resynth")


@functools.lru_cache(maxsize=1)
def photo_pool() -> tuple[np.ndarray, ...]:
    """The bundled photographs as float32 RGB arrays ``[H, W, 3]`` in [0, 1]."""
    photos = []
    for name in PHOTO_NAMES:
        img = np.asarray(getattr(skdata, name)())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        photos.append(np.ascontiguousarray(img[:, :, :3], dtype=np.float32) / 255.0)
    return tuple(photos)


def real_crop(rng: np.random.Generator, height: int, width: int | None = None, max_scale: float = 2.0) -> np.ndarray:
    """A random crop of a random photograph, down-scaled by a factor in [1, max_scale] to ``[height, width, 3]``.

    Crops are never up-sampled, so real images carry no interpolation fingerprint.
    """
    width = height if width is None else width
    pool = photo_pool()
    usable = [p for p in pool if p.shape[0] >= height and p.shape[1] >= width]
    photo = usable[int(rng.integers(len(usable)))]
    limit = min(max_scale, photo.shape[0] / height, photo.shape[1] / width)
    scale = float(rng.uniform(1.0, limit))
    ch, cw = min(photo.shape[0], round(height * scale)), min(photo.shape[1], round(width * scale))
    y = int(rng.integers(photo.shape[0] - ch + 1))
    x = int(rng.integers(photo.shape[1] - cw + 1))
    crop = photo[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if (ch, cw) != (height, width):
        crop = resize(crop, height, width)
    return np.clip(crop, 0.0, 1.0).astype(np.float32)


def resize(img: np.ndarray, height: int, width: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """Resize a float ``[H, W, C]`` array channel by channel with Pillow (down-scaling filters are anti-aliased)."""
    img = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)  # [C, H, W]
    planes = [Image.fromarray(plane, mode="F") for plane in img]
    return np.stack([np.asarray(p.resize((width, height), resample)) for p in planes], axis=2)


def _downsample(img: np.ndarray, factor: int) -> np.ndarray:
    h, w = img.shape[:2]
    return resize(img, max(1, h // factor), max(1, w // factor))


def _fit(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop / edge-pad ``img`` to ``[height, width, C]``."""
    img = img[:height, :width]
    pad_h, pad_w = height - img.shape[0], width - img.shape[1]
    if pad_h or pad_w:
        img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return img


# 1-D taps of the transposed convolution: a bilinear kernel whose even/odd phases have gains 1.1 / 0.9.
_TCONV_TAPS = np.array([1.0, 3.0, 3.0, 1.0]) / 4.0 * (1.0 + 0.1 * np.array([1.0, -1.0, 1.0, -1.0]))


def tconv(img: np.ndarray) -> np.ndarray:
    """2x down, then stride-2 transposed convolution with unequal phase gains (checkerboard)."""
    h, w = img.shape[:2]
    small = _downsample(img, 2)
    up = np.zeros((small.shape[0] * 2, small.shape[1] * 2, 3), dtype=np.float64)
    up[::2, ::2] = small
    kernel = np.outer(_TCONV_TAPS, _TCONV_TAPS)[:, :, None]
    out = signal.fftconvolve(np.pad(up, ((2, 2), (2, 2), (0, 0)), mode="reflect"), kernel, mode="same", axes=(0, 1))
    return _fit(out[2:-2, 2:-2], h, w)


def nearest_blur(img: np.ndarray) -> np.ndarray:
    """4x down, nearest-neighbour up, Gaussian blur (sigma 1 px)."""
    h, w = img.shape[:2]
    up = np.repeat(np.repeat(_downsample(img, 4), 4, axis=0), 4, axis=1)
    return ndimage.gaussian_filter(_fit(up, h, w), sigma=(1.0, 1.0, 0.0), mode="reflect")


def resynth(img: np.ndarray) -> np.ndarray:
    """Bicubic re-synthesis from a 3x down-sampled copy plus a faint period-8 up-sampling grid."""
    h, w = img.shape[:2]
    out = resize(_downsample(img, 3), h, w, Image.BICUBIC)
    yy, xx = np.mgrid[0:h, 0:w]
    grid = 0.012 * (np.cos(2 * np.pi * yy / 8.0) + np.cos(2 * np.pi * xx / 8.0))
    return out + grid[:, :, None]


def apply_process(name: str, img: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """``(1 - strength) * img + strength * process(img)``, clipped to [0, 1]; ``name`` in ``FAKE_PROCESSES``."""
    processes = {"tconv": tconv, "nearest_blur": nearest_blur, "resynth": resynth}
    if name not in processes:
        raise ValueError(f"unknown fake process {name!r}; expected one of {sorted(processes)}")
    out = (1.0 - strength) * img + strength * processes[name](img)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def save_png(img: np.ndarray, path: Path) -> None:
    """Write a float [0, 1] ``[H, W, 3]`` array as an 8-bit RGB PNG (byte-identical for equal input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(arr, mode="RGB").save(path, format="PNG", compress_level=1)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Write a CSV with ``\\n`` line endings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def split_counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Integer split of ``n`` items by ``fractions`` with at least one item per split."""
    if n < len(fractions):
        raise ValueError(f"n={n} is too small to give each of {len(fractions)} splits an item")
    counts = [max(1, int(n * f + 0.5)) for f in fractions]
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    counts[-1] += n - sum(counts)
    return counts


def radial_log_spectrum(img: np.ndarray, n_bins: int = 32) -> np.ndarray:
    """Azimuthally averaged log power spectrum of the grey image, ``[n_bins]`` over radius 0..corner (0.5*sqrt(2)).

    ``img``: ``[H, W]`` or ``[H, W, C]`` (any size; radii are normalised, so sizes mix). A Hann window removes the
    border discontinuity; the DC bin is excluded.
    """
    grey = np.asarray(img, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    h, w = grey.shape
    grey = (grey - grey.mean()) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey))) ** 2
    fy = (np.arange(h) - h // 2) / h
    fx = (np.arange(w) - w // 2) / w
    radius = np.sqrt((fy[:, None] ** 2 + fx[None, :] ** 2) / 0.5)
    bins = np.minimum((radius * n_bins).astype(int), n_bins - 1)
    keep = radius > 0
    sums = np.bincount(bins[keep], weights=power[keep], minlength=n_bins)
    counts = np.maximum(np.bincount(bins[keep], minlength=n_bins), 1)
    return np.log(sums / counts + 1e-12).astype(np.float32)
