"""Helpers for trainers' crash-consistency tests: run a CLI ``main`` in a forked process, kill it at a fault point.

Every trainer's test suite has a kill-and-resume test of this shape::

    from common_utils.train.testing import FAULT_ENV, metrics_rows, run_forked

    assert run_forked(main, [*args, f"run_dir={ref}"]) == 0
    assert run_forked(main, [*args, f"run_dir={run}"], env={FAULT_ENV: "after_checkpoint:1"}) == -9
    assert run_forked(main, [*args, f"run_dir={run}", "--resume", "auto"]) == 0
    assert metrics_rows(run / "metrics.jsonl") == metrics_rows(ref / "metrics.jsonl")

Fault points (``RunDir.end_epoch``): ``before_checkpoint``, ``after_checkpoint``, ``after_metrics``, each at a
given completed-epoch number (``"after_checkpoint:1"``).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .run_dir import FAULT_ENV

WALL_CLOCK_SUFFIXES = ("_s", "_seconds", "_time")

__all__ = ["FAULT_ENV", "metrics_rows", "run_forked"]


def _child(main: Callable, argv: Sequence[str], env: dict) -> None:
    os.environ.update(env)
    try:
        code = main(list(argv))
    except BaseException:  # the traceback is printed by multiprocessing's default handler only for Process.run
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(int(code or 0))


def run_forked(main: Callable, argv: Sequence[str], env: dict | None = None) -> int:
    """Run ``main(argv)`` in a forked child (no new interpreter to start); return its exit code (-9: SIGKILL)."""
    proc = mp.get_context("fork").Process(target=_child, args=(main, list(argv), dict(env or {})))
    proc.start()
    proc.join()
    return proc.exitcode


def metrics_rows(path: str | os.PathLike, drop_suffixes: Sequence[str] = WALL_CLOCK_SUFFIXES) -> list[dict]:
    """``metrics.jsonl`` rows without wall-clock fields (keys ending in ``_s``, ``_seconds``, ``_time``)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [{k: v for k, v in row.items() if not k.endswith(tuple(drop_suffixes))} for row in rows]
