"""Helpers for ``*/bench/*.py`` scripts. Torch-free on purpose: ``pin_threads`` must run before torch is imported."""
from __future__ import annotations

import os
import sys


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
