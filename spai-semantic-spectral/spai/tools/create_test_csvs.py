"""Per-generator test CSVs from folders of real and generated images (``python -m spai make-test-csvs``).

Upstream's ``data/*.csv`` hold one class each, so their AUC is undefined; the paper scores each generator against
the real images. This writes ``<out>/test_<generator>.csv`` = every image of the real folders (class 0) plus that
generator's images (class 1), split ``test``, with paths relative to ``<out>`` (``test`` reads them without
``--test-csv-root-dir``)::

    python -m spai make-test-csvs --real data/coco --real data/raise --fake sd3=data/sd3 --fake flux=data/flux \
        --out data
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); an error names a folder that is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def parse_fake(spec: str) -> tuple[str, Path]:
    """``NAME=FOLDER`` -> (name, folder)."""
    name, sep, folder = spec.partition("=")
    if not sep or not _NAME.match(name) or not folder:
        raise ValueError(f"--fake {spec!r}: expected NAME=FOLDER with NAME made of letters, digits, _ . -")
    return name, Path(folder)


def create_test_csvs(real_folders, fakes: dict[str, Path], out: str | Path, split: str = "test") -> list[Path]:
    """Write one CSV per generator; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reals = [p for folder in real_folders for p in list_images(folder)]
    if not reals:
        raise ValueError("give at least one --real folder")
    written = []
    for name, folder in fakes.items():
        path = out / f"test_{name}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["image", "class", "split"])
            for label, files in ((0, reals), (1, list_images(folder))):
                for p in files:
                    w.writerow([Path(os.path.relpath(p.resolve(), out.resolve())).as_posix(), label, split])
        written.append(path)
    return written
