"""Video-structured demo data derived from ``common_utils.synthetic.ai_images``: every image becomes a short clip.

A clip is ``frames`` crops of ``size`` x ``size`` pixels taken along a straight camera pan over one ai_images image
(a few pixels per frame, direction and start drawn from the seed), so consecutive frames share content and the
image's generator fingerprint, as frames of one video do. The clips are written as DeepfakeBench lays out extracted
frames, ``rgb/<class>/frames/<video>/000.png``, with a DeepfakeBench dataset JSON ``ai_images.json`` (label names
``ai_images_real`` and ``ai_images_<generator>``; ai_images' own train/val/test split per image), which
``python -m cascade_fast_filter manifest --deepfakebench`` turns into manifests with the video kept per frame.
Crops keep the pixel grid (no resampling). Like the frames of a real video dataset (FF++ c23/c40, CelebDF, DFDC
are all distributed as lossy video), every clip is compressed: its frames are JPEG-encoded at one quality drawn per
clip from ``jpeg_quality`` and decoded again, which weakens the high-frequency fingerprints unevenly across clips
(``jpeg_quality=None`` keeps them lossless).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from common_utils.data import load_image, read_manifest
from PIL import Image

SPLITS = ("train", "val", "test")


def pan_offsets(height: int, width: int, size: int, frames: int, step: int, rng: np.random.Generator):
    """Top-left corners [(y, x)] of ``frames`` crops moving by at most ``step`` px per frame inside the image."""
    room_y, room_x = height - size, width - size
    if room_y < 0 or room_x < 0:
        raise ValueError(f"image {height}x{width} is smaller than the {size}-px frame")
    span = max(1, frames - 1)
    dy = int(rng.integers(-min(step, room_y // span), min(step, room_y // span) + 1))
    dx = int(rng.integers(-min(step, room_x // span), min(step, room_x // span) + 1))
    y0 = int(rng.integers(max(0, -dy * span), room_y - max(0, dy * span) + 1))
    x0 = int(rng.integers(max(0, -dx * span), room_x - max(0, dx * span) + 1))
    return [(y0 + k * dy, x0 + k * dx) for k in range(frames)]


def compress(frame: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 frame [H, W, 3] after a JPEG round trip at ``quality`` (4:2:0 chroma subsampling, as video codecs)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"))


def write_clips(ai_root, out, frames: int = 3, size: int = 96, step: int = 4, seed: int = 0,
                jpeg_quality: tuple[int, int] | None = (60, 95)) -> Path:
    """Write the clips of every image of the ai_images set at ``ai_root`` under ``out``; returns the JSON path."""
    ai_root, out = Path(ai_root), Path(out)
    tree: dict = {}
    for s, split in enumerate(SPLITS):
        rows = read_manifest(ai_root / "manifests" / f"{split}_manifest.csv", data_root=ai_root)
        for i, row in enumerate(rows):
            kind = "real" if row.label == 0 else row.image_path.parent.name  # images/<generator>/<name>.png
            name = f"ai_images_{kind}"
            video = row.image_path.stem
            img = np.asarray(load_image(row.image_path))
            rng = np.random.default_rng([seed, s, i])
            quality = None if jpeg_quality is None else int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
            paths = []
            for k, (y, x) in enumerate(pan_offsets(img.shape[0], img.shape[1], size, frames, step, rng)):
                rel = Path("rgb") / kind / "frames" / video / f"{k:03d}.png"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                frame = img[y:y + size, x:x + size]
                Image.fromarray(frame if quality is None else compress(frame, quality)).save(out / rel,
                                                                                           compress_level=1)
                paths.append(rel.as_posix())
            tree.setdefault(name, {sp: {} for sp in SPLITS})[split][video] = {"label": name, "frames": paths}
    path = out / "ai_images.json"
    path.write_text(json.dumps({"ai_images": tree}, indent=1))
    return path
