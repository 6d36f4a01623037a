"""``gender_coco``: person-like figures in small scenes, COCO JSONs split by a per-image gender attribute.

Each image (128-192 px per side) is a blurred, low-contrast photo-crop background with 1-3 stick-and-block figures
(head, torso, arms, legs); each figure is a ``person`` (category 1) with its tight box. The image's gender attribute
sets the figures' clothing (trousers vs. dress) and carries a built-in detection gap: "women" images are fewer
(``WOMEN_FRACTION``) and their figures are smaller and lower-contrast against the background, so a detector trained
on the mixture scores a lower AP on them.

Layout under ``out``::

    {women,men}_split/{train,val,test}/<gender>_<split>_00000.png
    gender_{women,men}_{train,val,test}.json    COCO: info, licenses, images (file_name relative to the matching
                                                ``<gender>_split/<split>/`` folder, plus a ``gender`` field),
                                                annotations (bbox [x, y, w, h], area, iscrowd 0), categories
    synthetic_info.json

``n`` counts all images (splits 60/20/20 %).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .images import real_crop, save_png, split_counts

GENDERS = ("women", "men")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
WOMEN_FRACTION = 0.4
SIZES = (128, 144, 160, 176, 192)
# per gender: (figure height range as a fraction of the image height, colour contrast against the background)
STYLE = {"women": ((0.3, 0.6), 0.55), "men": ((0.4, 0.75), 1.0)}
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"}]
DEMO_N = 300


def _draw_figure(draw: ImageDraw.ImageDraw, x: float, y: float, h: float, dress: bool, colours: dict) -> None:
    """A figure of height ``h`` whose top-left corner of the bounding box is (x, y); width 0.5 h."""
    w = 0.5 * h
    cx, head = x + w / 2, 0.2 * h
    draw.ellipse([cx - head / 2, y, cx + head / 2, y + head], fill=colours["skin"])
    torso_top, torso_bottom = y + head * 1.05, y + 0.58 * h
    draw.rectangle([x, torso_top + 0.03 * h, x + 0.1 * w, torso_top + 0.4 * h], fill=colours["skin"])  # arms
    draw.rectangle([x + 0.9 * w, torso_top + 0.03 * h, x + w, torso_top + 0.4 * h], fill=colours["skin"])
    if dress:
        draw.rectangle([cx - 0.38 * w, torso_top, cx + 0.38 * w, torso_bottom - 0.12 * h], fill=colours["top"])
        draw.polygon([(cx - 0.38 * w, torso_bottom - 0.12 * h), (cx + 0.38 * w, torso_bottom - 0.12 * h),
                      (cx + 0.42 * w, y + 0.8 * h), (cx - 0.42 * w, y + 0.8 * h)], fill=colours["top"])
        for side in (-1, 1):
            left, right = sorted((cx + side * 0.08 * w, cx + side * 0.2 * w))
            draw.rectangle([left, y + 0.8 * h, right, y + h], fill=colours["skin"])
    else:
        draw.rectangle([cx - 0.38 * w, torso_top, cx + 0.38 * w, torso_bottom], fill=colours["top"])
        draw.rectangle([cx - 0.34 * w, torso_bottom, cx - 0.04 * w, y + h], fill=colours["bottom"])
        draw.rectangle([cx + 0.04 * w, torso_bottom, cx + 0.34 * w, y + h], fill=colours["bottom"])


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def render_scene(rng: np.random.Generator, gender: str) -> tuple[np.ndarray, list[list[float]]]:
    """One scene: image ``[H, W, 3]`` float32 and the figures' tight boxes ``[x, y, w, h]`` (pixels)."""
    height, width = int(rng.choice(SIZES)), int(rng.choice(SIZES))
    background = ndimage.gaussian_filter(real_crop(rng, height, width), sigma=(2.0, 2.0, 0.0))
    background = 0.3 + 0.4 * background
    (h_lo, h_hi), contrast = STYLE[gender]
    canvas = Image.fromarray(np.round(background * 255).astype(np.uint8))
    masks = []
    boxes: list[list[float]] = []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(20):
            h = rng.uniform(h_lo, h_hi) * height
            w = 0.5 * h
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            if all(_iou([x, y, w, h], b) < 0.2 for b in boxes):
                break
        else:
            continue
        local = background[int(y):int(y + h) + 1, int(x):int(x + w) + 1].mean(axis=(0, 1))
        colours = {}
        for part in ("skin", "top", "bottom"):
            target = rng.uniform(0.0, 1.0, 3) if part != "skin" else np.array([0.85, 0.65, 0.5]) * rng.uniform(0.5, 1.1)
            target = np.where(np.abs(target - local) < 0.3, 1.0 - local, target)  # keep the figure visible
            colours[part] = tuple(int(255 * c) for c in np.clip(local + contrast * (target - local), 0, 1))
        mask = Image.new("L", canvas.size, 0)
        for layer, fill in ((ImageDraw.Draw(canvas), colours), (ImageDraw.Draw(mask), dict.fromkeys(colours, 255))):
            _draw_figure(layer, x, y, h, gender == "women", fill)
        masks.append(np.asarray(mask) > 0)
        boxes.append([x, y, w, h])
    img = np.asarray(canvas, dtype=np.float32) / 255.0
    tight = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        tight.append([float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)])
    return img, tight


def generate(out: str | Path, n: int = DEMO_N, seed: int = 0) -> dict:
    """Write the dataset under ``out`` (``n`` images over both genders and three splits). Returns the counts."""
    out = Path(out)
    n_women = int(round(n * WOMEN_FRACTION))
    if min(n_women, n - n_women) < 3:
        raise ValueError(f"gender_coco needs n >= 8 (3 splits per gender), got {n}")
    info = {"name": "gender_coco", "n": n, "seed": seed, "counts": {},
            "notes": "category 1 = person; women images: fewer, smaller and lower-contrast figures (built-in AP gap)"}
    for g, (gender, count) in enumerate(zip(GENDERS, (n_women, n - n_women))):
        index = 0
        for split, split_count in zip(SPLITS, split_counts(count, SPLIT_FRACTIONS)):
            images, annotations = [], []
            for i in range(split_count):
                rng = np.random.default_rng([seed, 300 + g, index])
                index += 1
                image_id = g * 1_000_000 + index  # unique over both genders and all splits, as in COCO
                img, boxes = render_scene(rng, gender)
                file_name = f"{gender}_{split}_{i:05d}.png"
                save_png(img, out / f"{gender}_split" / split / file_name)
                images.append({"id": image_id, "file_name": file_name, "height": img.shape[0], "width": img.shape[1],
                               "gender": gender})
                for k, (x, y, w, h) in enumerate(boxes):
                    annotations.append({"id": image_id * 10 + k, "image_id": image_id, "category_id": 1,
                                        "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                                        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
            coco = {
                "info": {"description": f"synthetic gender_coco ({gender}, {split})", "version": "1.0",
                         "year": 2026, "contributor": "common_utils.synthetic", "seed": seed},
                "licenses": [], "images": images, "annotations": annotations, "categories": CATEGORIES,
            }
            (out / f"gender_{gender}_{split}.json").write_text(json.dumps(coco) + "\n")
            info["counts"][f"{gender}_{split}"] = {"images": len(images), "boxes": len(annotations)}
    (out / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
