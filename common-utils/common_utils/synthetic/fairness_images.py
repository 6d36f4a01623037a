"""``fairness_images``: real/fake images with a visible gender x race subgroup and a built-in detection bias.

Each image is a photo-crop background with a stylised face drawn on it: the skin tone encodes race (asian, white,
black, other) and the hair style encodes gender (short hair for male, long hair for female). Fakes are the same kind
of image passed through a generator-like process (``tconv`` or ``nearest_blur``) blended in with a strength that
depends on the subgroup (``ARTIFACT_STRENGTH``), and the subgroups have unequal sizes (``SUBGROUP_WEIGHTS``), so a
naive detector is measurably less accurate on the small, weak-artifact subgroups.

Layout under ``out`` (paths in the CSVs relative to ``out``)::

    images/{real,fake,fake_shifted}_00000.png
    pgfdd/{realtrain,faketrain,realval,fakeval,test}.csv
    pgfdd/test_shifted.csv     test reals + fakes from a different process (``resynth``): a cross-dataset test
    synthetic_info.json

CSV columns (PG-FDD): ``img_path,label,ismale,isasian,iswhite,isblack,intersec_label``; label 1 = fake, attribute
columns +1/-1, ``intersec_label = gender * 4 + race`` with gender 0 male / 1 female and race 0 asian, 1 white,
2 black, 3 other. ``n`` counts the images of the five PG-FDD CSVs (half real); splits 60/15/25 %.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .images import apply_process, real_crop, save_png, split_counts, write_csv

SUBGROUPS = ("male-asian", "male-white", "male-black", "male-other",
             "female-asian", "female-white", "female-black", "female-other")
SUBGROUP_WEIGHTS = (0.12, 0.25, 0.08, 0.07, 0.10, 0.22, 0.09, 0.07)
# Blend weight of the generator process per subgroup: the large groups carry strong artifacts.
ARTIFACT_STRENGTH = (0.5, 1.0, 0.04, 0.03, 0.4, 0.9, 0.04, 0.02)
SKIN_TONES = ((0.93, 0.80, 0.62), (0.98, 0.84, 0.76), (0.40, 0.26, 0.17), (0.76, 0.57, 0.40))
TRAIN_PROCESSES = ("tconv", "nearest_blur")
SHIFTED_PROCESS = "resynth"
SPLIT_FRACTIONS = (0.6, 0.15, 0.25)
IMAGE_SIZE = 128
DEMO_N = 480
HEADER = ["img_path", "label", "ismale", "isasian", "iswhite", "isblack", "intersec_label"]


def render_subject(background: np.ndarray, subgroup: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a stylised face for ``subgroup`` (PG-FDD intersec_label) onto ``background`` ``[S, S, 3]``."""
    size = background.shape[0]
    female, race = divmod(subgroup, 4)
    canvas = Image.fromarray(np.round(background * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    cx = size / 2 + rng.uniform(-0.08, 0.08) * size
    cy = size / 2 + rng.uniform(-0.05, 0.08) * size
    rx, ry = size * rng.uniform(0.2, 0.25), size * rng.uniform(0.26, 0.31)
    hair = tuple(int(255 * c) for c in (rng.uniform(0.05, 0.35),) * 2 + (rng.uniform(0.02, 0.2),))
    if female:  # long hair falling behind the face to the shoulders
        draw.rounded_rectangle([cx - rx * 1.35, cy - ry * 1.2, cx + rx * 1.35, cy + ry * 1.55], radius=rx, fill=hair)
    skin = np.clip(np.array(SKIN_TONES[race]) + rng.normal(0, 0.03, 3), 0, 1)
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(255 * c) for c in skin))
    if not female:  # short hair cap
        draw.chord([cx - rx, cy - ry * 1.08, cx + rx, cy + ry * 0.4], 180, 360, fill=hair)
    for side in (-1, 1):
        ex, ey = cx + side * rx * 0.4, cy - ry * 0.1
        draw.ellipse([ex - rx * 0.13, ey - ry * 0.07, ex + rx * 0.13, ey + ry * 0.07], fill=(250, 250, 250))
        draw.ellipse([ex - rx * 0.06, ey - ry * 0.06, ex + rx * 0.06, ey + ry * 0.06], fill=(30, 20, 15))
    draw.arc([cx - rx * 0.4, cy + ry * 0.25, cx + rx * 0.4, cy + ry * 0.6], 20, 160, fill=(120, 30, 40), width=2)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _row(rel: str, label: int, subgroup: int) -> list:
    female, race = divmod(subgroup, 4)
    sign = lambda flag: 1 if flag else -1  # noqa: E731
    return [rel, label, sign(not female), sign(race == 0), sign(race == 1), sign(race == 2), subgroup]


def _make(out: Path, rel: str, seed_key: list[int], subgroup: int, process: str | None) -> None:
    rng = np.random.default_rng(seed_key)
    img = render_subject(real_crop(rng, IMAGE_SIZE), subgroup, rng)
    if process is not None:
        img = apply_process(process, img, ARTIFACT_STRENGTH[subgroup])
    save_png(img, out / rel)


def generate(out: str | Path, n: int = DEMO_N, seed: int = 0) -> dict:
    """Write the dataset under ``out`` (``n`` images in the five PG-FDD CSVs). Returns the counts written."""
    out = Path(out)
    if n < 12:
        raise ValueError(f"fairness_images needs n >= 12, got {n}")
    rng = np.random.default_rng([seed, 100])
    n_real = n // 2
    csvs = {name: [] for name in ("realtrain", "faketrain", "realval", "fakeval", "test", "test_shifted")}
    for label, count in ((0, n_real), (1, n - n_real)):
        subgroups = rng.choice(len(SUBGROUPS), size=count, p=SUBGROUP_WEIGHTS)
        processes = rng.choice(len(TRAIN_PROCESSES), size=count)
        train, val, _ = split_counts(count, SPLIT_FRACTIONS)
        kind = "fake" if label else "real"
        for i in range(count):
            rel = f"images/{kind}_{i:05d}.png"
            sg = int(subgroups[i])
            _make(out, rel, [seed, 101 + label, i], sg, TRAIN_PROCESSES[processes[i]] if label else None)
            split = "train" if i < train else "val" if i < train + val else "test"
            csvs[split if split == "test" else f"{kind}{split}"].append(_row(rel, label, sg))
            if split == "test" and label == 0:
                csvs["test_shifted"].append(_row(rel, label, sg))
            elif split == "test":  # a fake of the same subgroup from the held-out process
                rel_shift = f"images/fake_shifted_{i:05d}.png"
                _make(out, rel_shift, [seed, 103, i], sg, SHIFTED_PROCESS)
                csvs["test_shifted"].append(_row(rel_shift, label, sg))
    for name, rows in csvs.items():
        write_csv(out / "pgfdd" / f"{name}.csv", HEADER, rows)
    info = {
        "name": "fairness_images", "n": n, "seed": seed, "subgroups": list(SUBGROUPS),
        "subgroup_weights": list(SUBGROUP_WEIGHTS), "artifact_strength": list(ARTIFACT_STRENGTH),
        "train_processes": list(TRAIN_PROCESSES), "shifted_process": SHIFTED_PROCESS,
        "counts": {name: len(rows) for name, rows in csvs.items()},
        "labels": "0 = real, 1 = fake; intersec_label = gender*4 + race "
                  "(gender 0 male / 1 female; race 0 asian, 1 white, 2 black, 3 other)",
    }
    (out / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
