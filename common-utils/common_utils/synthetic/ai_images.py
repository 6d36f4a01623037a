"""``ai_images``: real photo crops vs. fakes from several generator-like processes (SPAI CSVs + manifest CSVs).

Layout under ``out``::

    images/real/real_00000.png ...          n real crops, sizes 96..320 px
    images/<generator>/<generator>_00000.png   n fakes in total, round-robin over the generators
    spai/train.csv                          image,class,split  (split train|val; class 1 = fake)
    spai/test_<generator>.csv               every real test image + that generator's test fakes (split test)
    manifests/{train,val,test}_manifest.csv image_path,label,dataset,split (dataset = generator name; reals are
                                            spread round-robin over the generator datasets)
    synthetic_info.json

All paths in the CSVs are relative to ``out`` (pass it as the CSV root / data root). Splits: 50/20/30 %.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .images import FAKE_PROCESSES, apply_process, real_crop, save_png, split_counts, write_csv

SIZES = (96, 128, 160, 192, 256, 320)
SIZE_PROBS = (0.2, 0.25, 0.2, 0.15, 0.12, 0.08)
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.5, 0.2, 0.3)
DEMO_N = 160


def _size(rng: np.random.Generator) -> tuple[int, int]:
    height = int(rng.choice(SIZES, p=SIZE_PROBS))
    width = int(rng.choice(SIZES, p=SIZE_PROBS)) if rng.random() < 0.3 else height
    return height, width


def _split_of(index: int, counts: list[int]) -> str:
    return SPLITS[int(np.searchsorted(np.cumsum(counts), index, side="right"))]


def generate(out: str | Path, n: int = DEMO_N, seed: int = 0, generators: tuple[str, ...] = FAKE_PROCESSES) -> dict:
    """Write the dataset under ``out``; ``n`` real images and ``n`` fakes in total. Returns the counts written."""
    out = Path(out)
    if n < 3 * len(generators):
        raise ValueError(f"ai_images needs n >= {3 * len(generators)} (3 splits x {len(generators)} generators), "
                         f"got {n}")
    # Each image has its own stream, so image i is the same for every n >= i (same seed).
    real_split = split_counts(n, SPLIT_FRACTIONS)
    rows = []  # (relative path, label, generator/dataset, split)
    for i in range(n):
        rng = np.random.default_rng([seed, 0, i])
        img = real_crop(rng, *_size(rng))
        rel = f"images/real/real_{i:05d}.png"
        save_png(img, out / rel)
        rows.append((rel, 0, None, _split_of(i, real_split)))
    fake_counts = [len(range(g, n, len(generators))) for g in range(len(generators))]
    for g, name in enumerate(generators):
        counts = split_counts(fake_counts[g], SPLIT_FRACTIONS)
        for j in range(fake_counts[g]):
            rng = np.random.default_rng([seed, 1 + g, j])
            img = apply_process(name, real_crop(rng, *_size(rng)))
            rel = f"images/{name}/{name}_{j:05d}.png"
            save_png(img, out / rel)
            rows.append((rel, 1, name, _split_of(j, counts)))

    # Reals join the generator datasets round-robin within each split, so every dataset mixes both classes.
    turn = {s: 0 for s in SPLITS}
    manifest = {s: [] for s in SPLITS}
    for rel, label, name, split in rows:
        if name is None:
            name = generators[turn[split] % len(generators)]
            turn[split] += 1
        manifest[split].append([rel, label, name, split])
    for split in SPLITS:
        write_csv(out / "manifests" / f"{split}_manifest.csv", ["image_path", "label", "dataset", "split"],
                  manifest[split])

    write_csv(out / "spai" / "train.csv", ["image", "class", "split"],
              [[rel, label, split] for rel, label, _, split in rows if split != "test"])
    for name in generators:
        write_csv(out / "spai" / f"test_{name}.csv", ["image", "class", "split"],
                  [[rel, label, split] for rel, label, gen, split in rows if split == "test" and gen in (None, name)])

    info = {
        "name": "ai_images", "n": n, "seed": seed, "generators": list(generators),
        "counts": {s: {"real": sum(1 for r in rows if r[3] == s and r[1] == 0),
                       "fake": sum(1 for r in rows if r[3] == s and r[1] == 1)} for s in SPLITS},
        "labels": "0 = real, 1 = fake",
    }
    (out / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
