"""The paper's robustness sweep: AUC per test set against the strength of a perturbation applied at test time.

Perturbations (on the 8-bit image, before the test transform): JPEG and WebP re-compression at a quality, Gaussian
blur of a standard deviation (pixels), additive Gaussian noise of a standard deviation (0-255 scale) and resizing
by a factor. Each level is applied to every image of every test set (reals and fakes alike).
"""
from __future__ import annotations

import io
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageFilter

from .data import read_rows
from .engine import csv_roots, score_sets, set_metrics
from .tables import _fmt

# strengths per perturbation, mildest first; the clean images are the reference point of every curve
LEVELS = {
    "jpeg": [95, 90, 80, 70, 60, 50],
    "webp": [95, 90, 80, 70, 60, 50],
    "blur": [0.5, 1.0, 1.5, 2.0, 3.0],
    "noise": [2.0, 5.0, 10.0, 15.0, 20.0],
    "resize": [1.5, 1.25, 0.75, 0.5],
}
AXIS = {"jpeg": "JPEG quality", "webp": "WebP quality", "blur": "Gaussian blur sigma (px)",
        "noise": "Gaussian noise sigma (0-255)", "resize": "resize factor"}
CLEAN = {"jpeg": 100, "webp": 100, "blur": 0.0, "noise": 0.0, "resize": 1.0}  # where the clean point is drawn


@dataclass(frozen=True)
class Perturbation:
    """PIL RGB image -> perturbed PIL RGB image. Noise is seeded by the image's content (order-independent)."""

    kind: str
    level: float

    def __post_init__(self):
        if self.kind not in LEVELS:
            raise ValueError(f"unknown perturbation {self.kind!r}; expected one of {', '.join(LEVELS)}")

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.kind in ("jpeg", "webp"):
            buf = io.BytesIO()
            img.save(buf, format=self.kind.upper(), quality=int(self.level))
            buf.seek(0)
            with Image.open(buf) as out:
                return out.convert("RGB")
        if self.kind == "blur":
            return img.filter(ImageFilter.GaussianBlur(radius=self.level))
        if self.kind == "noise":
            rng = np.random.default_rng(zlib.crc32(img.tobytes()))
            arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, self.level, (img.height, img.width, 3))
            return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))
        w, h = img.size
        return img.resize((max(1, round(w * self.level)), max(1, round(h * self.level))), Image.BILINEAR)


def sweep(model, csvs, roots, ctx, cfg, kinds=tuple(LEVELS), batch_size=None) -> dict:
    """``{"clean": {set: auc}, kind: {level: {set: auc}}}`` over the test CSVs (split ``test``)."""
    sets = {Path(c).stem: read_rows(c, r, "test") for c, r in zip(csvs, csv_roots(csvs, roots))}

    def aucs(perturb):
        scored = score_sets(model, sets, ctx, cfg, batch_size=batch_size, perturb=perturb)
        return {name: set_metrics(labels, scores)["auc"] for name, (scores, labels) in scored.items()}

    out = {"clean": aucs(None)}
    for kind in kinds:
        out[kind] = {str(level): aucs(Perturbation(kind, level)) for level in LEVELS[kind]}
    return out


def _curve(results: dict, kind: str, name: str) -> tuple[list[float], list[float | None]]:
    """Points of one curve in increasing strength value (the clean point where it falls: resize has levels on
    both sides of 1), so that the line joins neighbouring strengths."""
    points = sorted([(CLEAN[kind], results["clean"][name])]
                    + [(float(level), results[kind][level][name]) for level in results[kind]])
    return [x for x, _ in points], [y for _, y in points]


def write_sweep(results: dict, out_dir: Path, title: str = "") -> list[Path]:
    """``robustness.json``, ``robustness.md`` (mean AUC over the test sets per level) and ``robustness.png``."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in results if k != "clean"]
    names = list(results["clean"])
    json_path = out_dir / "robustness.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    lines = ["| perturbation | strength | mean AUC | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names),
             f"| none | - | {_fmt(mean(results['clean'].values()), 3)} | "
             + " | ".join(_fmt(results["clean"][n], 3) for n in names) + " |"]
    for kind in kinds:
        for level, per_set in results[kind].items():
            lines.append(f"| {kind} | {level} | {_fmt(mean(per_set.values()), 3)} | "
                         + " | ".join(_fmt(per_set[n], 3) for n in names) + " |")
    md_path = out_dir / "robustness.md"
    md_path.write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds), 3.2), squeeze=False, sharey=True)
    lowest = min([v for per_set in [results["clean"]] + [p for k in kinds for p in results[k].values()]
                  for v in per_set.values() if v is not None], default=0.4)
    bottom = min(0.4, math.floor(lowest * 10) / 10)  # every point visible, below-chance ones too
    for ax, kind in zip(axes[0], kinds):
        for name in names:
            xs, ys = _curve(results, kind, name)
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", ms=3, label=name)
        if kind in ("jpeg", "webp"):
            ax.invert_xaxis()  # stronger compression to the right
        ax.set(xlabel=AXIS[kind], ylim=(bottom, 1.01))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("AUC")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(title or "robustness: AUC against perturbation strength")
    png_path = out_dir / "robustness.png"
    fig.savefig(png_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [json_path, md_path, png_path]
