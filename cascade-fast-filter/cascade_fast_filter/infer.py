"""Inference: folders or CSVs of images -> CSV of calibrated P(fake) (also usable as a stage-2 score CSV)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from common_utils.data import DataFormatError

from .config import resolve_path
from .costs import stage1_costs
from .scores import write_score_csv
from .stage1.calibration import calibrated_probs, load_temperature
from .stage1.data import relative_path
from .stage1.model import load_trained_model, predict_logits

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class ImageItem(NamedTuple):
    image_path: Path
    label: int = -1


def list_images(source, data_root) -> list[ImageItem]:
    """Images of a folder (recursive, sorted) or of a CSV's `image_path` column (relative to data_root)."""
    source = Path(source)
    if source.is_dir():
        items = [ImageItem(p) for p in sorted(source.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    elif source.is_file():
        with open(source, newline="") as f:
            reader = csv.DictReader(f)
            if "image_path" not in (reader.fieldnames or []):
                raise DataFormatError(source, "no image_path column")
            items = []
            for line, row in enumerate(reader, start=2):
                path = resolve_path(row["image_path"], data_root)
                if not path.is_file():
                    raise DataFormatError(source, f"image not found: {path}", line=line)
                items.append(ImageItem(path))
    else:
        raise FileNotFoundError(f"infer input not found: {source}")
    if not items:
        raise DataFormatError(source, "no images")
    return items


def infer(cfg, sources, output, checkpoint=None, temperature_file=None) -> Path:
    """Write `output` CSV for every image of `sources` (folders / CSVs): image_path (relative to data.root when
    below it), logit, p_fake, score, cost_gflops, cost_ms (this model's cost per image, ``costs.stage1_costs``)."""
    run_dir = Path(cfg.run_dir)
    model, _ = load_trained_model(checkpoint or run_dir / "best_model.pth", cfg)
    t = load_temperature(temperature_file or run_dir / "calibration_temp.json")
    items = [item for source in ([sources] if isinstance(sources, (str, Path)) else sources)
             for item in list_images(source, cfg.data.root)]
    logits = predict_logits(model, items, cfg)
    paths = [relative_path(i.image_path, cfg.data.root) for i in items]
    cost = stage1_costs(cfg, model)
    out = write_score_csv(output, paths, logits, calibrated_probs(logits, t), cost["gflops"], cost["ms"])
    print(f"wrote {len(items)} predictions to {out}")
    return out
