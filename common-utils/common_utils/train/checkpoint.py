"""Atomic checkpoint writes, weights-only loads and RNG state capture for exact resume."""
from __future__ import annotations

import errno
import os
import random
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the path and the cause. The previous file is intact."""


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` with ``torch.save`` to a temp file beside ``path``, fsync it, then ``os.replace``.

    A crash at any point leaves either the previous file or the new one, never a truncated mix; a failed write
    (disk full, permissions) removes the temp file and raises :class:`CheckpointWriteError` naming ``path``. The
    file gets the mode any other output gets (``0o666`` minus the umask), not the temp file's ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        cause = e if isinstance(e, OSError) else getattr(e, "__cause__", None) or getattr(e, "__context__", None)
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            raise CheckpointWriteError(errno.ENOSPC, f"{path}: disk full while writing the checkpoint; the previous "
                                       f"checkpoint is kept; free space or choose another run_dir") from e
        if isinstance(e, OSError):
            raise CheckpointWriteError(e.errno, f"{path}: could not write the checkpoint ({e.strerror or e}); "
                                       f"the previous checkpoint is kept") from e
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", safe_globals: Iterable[Any] = ()) -> Any:
    """Read a checkpoint through :func:`common_utils.safe_load.load_weights` (weights-only; no pickled code runs).

    ``safe_globals`` allow-lists extra classes a file legitimately pickles. Raises ``FileNotFoundError`` or
    :class:`~common_utils.safe_load.WeightsFileError`, both naming the file.
    """
    from ..safe_load import load_weights

    return load_weights(path, map_location=map_location, safe_globals=safe_globals, what="checkpoint")


def capture_rng_state() -> dict:
    """RNG states of python, numpy, torch (CPU and CUDA) as tensors/lists that a weights-only load accepts."""
    np_state = np.random.get_state()
    state = {
        "python": _to_plain(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_to_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(x):
    return [_to_plain(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def resolve_resume(resume: str | os.PathLike | None, last: str | os.PathLike) -> Path | None:
    """The checkpoint a ``--resume`` value points at.

    ``None``/``""`` -> no resume; ``"auto"`` -> ``last`` (the run's latest checkpoint) when it exists, else a fresh
    start, which is what a requeued SLURM job needs; any other value must be an existing file.
    """
    if resume is None or str(resume) == "":
        return None
    if str(resume) == "auto":
        last = Path(last)
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {path}: no such checkpoint")
    return path


class StateDictMismatchError(ValueError):
    """A state dict that does not fit a module; the message lists every missing, unexpected and mis-shaped key."""


def check_state_dict(module: torch.nn.Module, state_dict: dict, source: str = "checkpoint",
                     allowed_missing: tuple[str, ...] = ()) -> None:
    """Raise :class:`StateDictMismatchError` unless every tensor of ``state_dict`` and of ``module`` is accounted for.

    ``allowed_missing``: key prefixes the module may have that the file lacks (e.g. new zero-initialised modules).
    """
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state_dict and not k.startswith(tuple(allowed_missing)))
    unexpected = sorted(k for k in state_dict if k not in own)
    shapes = sorted(f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        raise StateDictMismatchError(f"{source} does not match {type(module).__name__}:\n  missing: {missing}\n"
                                     f"  unexpected: {unexpected}\n  mis-shaped: {shapes}")


def load_state_dict_strict(module: torch.nn.Module, state_dict: dict, source: str = "checkpoint",
                           allowed_missing: tuple[str, ...] = (), assign: bool = False) -> None:
    """:func:`check_state_dict`, then a strict ``load_state_dict``; allowed-missing keys keep the module's values."""
    check_state_dict(module, state_dict, source, allowed_missing)
    own = module.state_dict()
    full = {k: state_dict[k] if k in state_dict else own[k] for k in own}
    module.load_state_dict(full, strict=True, assign=assign)
