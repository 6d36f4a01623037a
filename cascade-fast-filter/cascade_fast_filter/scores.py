"""Score CSVs: ``infer`` writes them, ``cascade``/``evaluate`` read stage 2's.

Columns ``image_path,score[,cost_gflops][,cost_ms]`` (score = P(fake), higher = fake; paths relative to the data
root or absolute). ``cost_gflops`` / ``cost_ms`` declare the detector's cost per image (FLOPs; measured time at its
batch size and device). ``infer`` also writes ``logit`` and ``p_fake``.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from common_utils.data import DataFormatError

from .config import resolve_path

COST_COLUMNS = {"gflops": "cost_gflops", "ms": "cost_ms"}


def read_score_csv(path, data_root) -> tuple[dict, dict]:
    """Returns ({resolved path str: score}, {"gflops": mean declared cost or None, "ms": ... or None})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"stage-2 score CSV not found: {path}")
    scores, costs = {}, {unit: [] for unit in COST_COLUMNS}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image_path", "score"} - set(reader.fieldnames or [])
        if missing:
            raise DataFormatError(path, f"missing column(s) {sorted(missing)} (need image_path,score)")
        for line, row in enumerate(reader, start=2):
            try:
                score = float(row["score"])
                declared = {unit: float(row[col]) for unit, col in COST_COLUMNS.items()
                            if row.get(col) not in (None, "")}
            except ValueError as err:
                raise DataFormatError(path, str(err), line=line) from None
            if not math.isfinite(score):
                raise DataFormatError(path, f"score {row['score']!r} is not finite", line=line)
            key = str(resolve_path(row["image_path"], data_root).resolve())
            if key in scores:
                raise DataFormatError(path, f"duplicate image_path {row['image_path']!r}", line=line)
            scores[key] = score
            for unit, value in declared.items():
                costs[unit].append(value)
    return scores, {unit: (float(np.mean(v)) if v else None) for unit, v in costs.items()}


def write_score_csv(path, image_paths, logits, p_fake, cost_gflops: float, cost_ms: float | None = None) -> Path:
    """Inference CSV, usable as a stage-2 score CSV: image_path,logit,p_fake,score,cost_gflops,cost_ms."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_path", "logit", "p_fake", "score", "cost_gflops", "cost_ms"])
        ms = "" if cost_ms is None else f"{cost_ms:.6f}"
        for p, z, q in zip(image_paths, logits, p_fake):
            writer.writerow([p, f"{z:.6f}", f"{q:.6f}", f"{q:.6f}", f"{cost_gflops:.6f}", ms])
    return path
