"""Run logging: tqdm progress bars, TensorBoard scalars and a ``metrics.jsonl`` line per call."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from tqdm.auto import tqdm


def progress(iterable: Iterable, desc: str = "", enabled: bool = True, **kwargs) -> Iterable:
    """A tqdm bar on the main process, the bare iterable elsewhere."""
    return tqdm(iterable, desc=desc, dynamic_ncols=True, **kwargs) if enabled else iterable


def _plain(value):
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricLogger:
    """Append ``{"step": s, **metrics}`` to ``run_dir/metrics.jsonl`` and the scalar ones to TensorBoard.

    Only the main process writes; on other ranks every call is a no-op.
    """

    def __init__(self, run_dir: str | os.PathLike, is_main: bool = True, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        self._tb = None
        if is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def log(self, step: int, metrics: Mapping, prefix: str = "") -> None:
        if not self.is_main:
            return
        row = {"step": int(step)}
        row.update({f"{prefix}{k}": _plain(v) for k, v in metrics.items()})
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
