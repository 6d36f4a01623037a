"""Embedded synthetic datasets in the real on-disk formats (see each module's docstring for its layout).

``python -m common_utils.synthetic <name> --out DIR [--n N] [--seed S]`` writes one dataset;
``python -m common_utils.synthetic all --out DIR`` writes every dataset under ``DIR/<name>`` at its demo size.
Every generator is deterministic for a seed (byte-identical files).
"""

from __future__ import annotations

from pathlib import Path

from . import ai_images, fairness_images, gender_coco, partial_spoof_audio
from .images import FAKE_PROCESSES, apply_process, radial_log_spectrum, real_crop

DATASETS = {
    "ai_images": ai_images,
    "fairness_images": fairness_images,
    "partial_spoof_audio": partial_spoof_audio,
    "gender_coco": gender_coco,
}
DEMO_SIZES = {name: module.DEMO_N for name, module in DATASETS.items()}


def generate(name: str, out: str | Path, n: int | None = None, seed: int = 0) -> dict:
    """Write dataset ``name`` under ``out`` with ``n`` items (its demo size when None). Returns its summary dict."""
    if name not in DATASETS:
        raise ValueError(f"unknown synthetic dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name].generate(out, n=DEMO_SIZES[name] if n is None else n, seed=seed)


__all__ = ["DATASETS", "DEMO_SIZES", "FAKE_PROCESSES", "apply_process", "generate", "radial_log_spectrum", "real_crop"]
