"""Helpers for ``*/bench/*.py`` scripts: the thread count, the clock and interleaved medians. Torch-free at import on
purpose: ``pin_threads`` must run before torch is imported."""
from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable


def pin_threads(argv: list[str] | None = None) -> int:
    """``--threads N`` (default 1) from ``argv`` (default ``sys.argv``) into OMP/MKL before torch is imported, so its
    thread pools start at that size; returns N (then call ``torch.set_num_threads(N)``)."""
    argv = sys.argv if argv is None else argv
    n = 1
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif arg.startswith("--threads="):
            n = int(arg.split("=", 1)[1])
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    return n


def clock(device, threads: int) -> tuple[Callable[[], float], str]:
    """The timer of a bench and its name: process CPU time on a 1-thread CPU run (robust to other load on the
    machine), else wall time. ``device``: a ``torch.device`` (or anything with ``.type``)."""
    if device.type == "cpu" and threads == 1:
        return time.process_time, "process CPU time (1 thread)"
    return time.perf_counter, "wall time"


def medians(fns: dict[str, Callable[[], object]], repeats: int, device, threads: int, *, warmup: int = 1,
            log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Seconds per call of each fn: ``warmup`` calls each, then ``repeats`` rounds interleaving the fns (so load on
    the machine hits every side alike), each call timed with :func:`clock` between CUDA synchronisations; medians.
    ``log`` gets one line per round."""
    now, _ = clock(device, threads)
    if device.type == "cuda":
        import torch

        sync = torch.cuda.synchronize
    else:
        def sync():
            return None
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            sync()
            t = now()
            fn()
            sync()
            times[name].append(now() - t)
        if log is not None:
            log(f"round {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
    return {name: statistics.median(v) for name, v in times.items()}


def median_seconds(fn: Callable[[], object], repeats: int, device, threads: int, *, warmup: int = 1) -> float:
    """:func:`medians` of one fn."""
    return medians({"fn": fn}, repeats, device, threads, warmup=warmup)["fn"]
