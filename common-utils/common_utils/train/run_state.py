"""The one run-state checkpoint format every trainer writes and resumes from.

A run-state file is a dict with exactly these top-level keys (``RUN_STATE_KEYS``)::

    format      "common_utils.run_state/1"
    epoch       completed epochs (a run resumed from it starts with epoch index ``epoch``)
    steps       {name: optimizer steps made}
    models      {name: state_dict}              the bare modules (never DDP/compile wrappers)
    optimizers  {name: state_dict}
    schedulers  {name: state_dict}
    scalers     {name: GradScaler state_dict}   empty dicts when not fp16
    ema         {name: state_dict}              EMA weights where a trainer keeps them
    rng         [capture_rng_state() of rank 0, rank 1, ...]
    world_size  processes that wrote it
    config      the resolved config (plain containers)
    history     [metrics row of epoch 1, epoch 2, ...]   what metrics.jsonl holds, rewritten from here on resume
    extra       {...}                           trainer-specific scalars (best metric so far, patience counter, ...)

Upstream-format exports (a ``best_model.pth`` of weights only, tcm_add's ``avg_5_best.pth``, FAAP epoch files) are
separate files written by their own functions; :func:`load_run_state` recognises such a file and says which one to
pass instead.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, load_state_dict_strict, restore_rng_state, save_checkpoint
from .distributed import DistContext, gather_rng_states

log = logging.getLogger(__name__)

FORMAT = "common_utils.run_state/1"
RUN_STATE_KEYS = ("format", "epoch", "steps", "models", "optimizers", "schedulers", "scalers", "ema", "rng",
                  "world_size", "config", "history", "extra")


class RunStateError(ValueError):
    """A file that is not a run state, or one that does not fit the run resuming from it."""


@dataclass
class TrainState:
    """What a trainer resumes: its modules and their optimisation state, each under a name (usually ``model``).

    ``steppers`` are :class:`~common_utils.train.step.OptimStep` objects (their GradScaler and step count);
    ``ema`` objects need ``state_dict``/``load_state_dict`` (timm's ``ModelEmaV3``, torch's ``AveragedModel``).
    """

    models: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    steppers: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, Any] = field(default_factory=dict)


@dataclass
class Resumed:
    """What :func:`load_run_state` hands back besides the restored objects."""

    epoch: int
    history: list[dict]
    extra: dict
    config: dict
    path: Path


def save_run_state(path: str | os.PathLike, state: TrainState, ctx: DistContext, *, epoch: int,
                   history: list[Mapping], config: Mapping | None = None, extra: Mapping | None = None) -> None:
    """Write ``state`` after ``epoch`` completed epochs. Collective: every rank calls it (their RNG states are
    gathered); only rank 0 writes, atomically."""
    rng = gather_rng_states()
    if not ctx.is_main:
        return
    payload = {
        "format": FORMAT,
        "epoch": int(epoch),
        "steps": {k: s.optimizer_steps for k, s in state.steppers.items()},
        "models": {k: m.state_dict() for k, m in state.models.items()},
        "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in state.schedulers.items()},
        "scalers": {k: s.scaler.state_dict() for k, s in state.steppers.items()},
        "ema": {k: e.state_dict() for k, e in state.ema.items()},
        "rng": rng,
        "world_size": ctx.world_size,
        "config": dict(config or {}),
        "history": [dict(row) for row in history],
        "extra": dict(extra or {}),
    }
    save_checkpoint(payload, path)


def read_run_state(path: str | os.PathLike) -> dict:
    """Load and validate a run-state file without restoring anything (e.g. to inspect its config or epoch)."""
    path = Path(path)
    data = load_checkpoint(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        keys = sorted(map(str, data))[:8] if isinstance(data, dict) else type(data).__name__
        raise RunStateError(
            f"{path} is not a run-state checkpoint (top-level keys {keys}): it looks like a model export; to resume "
            f"pass the run directory's last.pth (or --resume auto); to start from these weights use the config's "
            f"pretrained/init option")
    missing = [k for k in RUN_STATE_KEYS if k not in data]
    if missing:
        raise RunStateError(f"{path}: run-state checkpoint lacks keys {missing}; it was not written by "
                            f"save_run_state or is damaged")
    return data


def load_run_state(path: str | os.PathLike, state: TrainState, ctx: DistContext) -> Resumed:
    """Restore every object of ``state`` and this rank's RNG streams from ``path``; return epoch, history, extra.

    Every named object of ``state`` must be in the file and vice versa (an error lists the difference), and model
    weights load strictly. Resuming with another number of processes continues, but not bit-exactly (logged).
    """
    path = Path(path)
    data = read_run_state(path)
    for key, objects in (("models", state.models), ("optimizers", state.optimizers),
                         ("schedulers", state.schedulers), ("scalers", state.steppers), ("ema", state.ema)):
        if set(objects) != set(data[key]):
            raise RunStateError(f"{path}: '{key}' holds {sorted(data[key])} but this run has {sorted(objects)}; "
                                f"was it written by another trainer or configuration?")
    for name, module in state.models.items():
        load_state_dict_strict(module, data["models"][name], source=f"{path} models.{name}")
    for name, opt in state.optimizers.items():
        opt.load_state_dict(data["optimizers"][name])
    for name, sched in state.schedulers.items():
        sched.load_state_dict(data["schedulers"][name])
    for name, stepper in state.steppers.items():
        stepper.load_state_dict({"scaler": data["scalers"][name], "optimizer_steps": data["steps"].get(name, 0)})
    for name, ema in state.ema.items():
        ema.load_state_dict(data["ema"][name])
    rng = data["rng"]
    if data["world_size"] != ctx.world_size:
        log.warning("%s was written by %d process(es), resuming with %d: random streams continue approximately",
                    path, data["world_size"], ctx.world_size)
    restore_rng_state(rng[min(ctx.rank, len(rng) - 1)])
    return Resumed(epoch=int(data["epoch"]), history=list(data["history"]), extra=dict(data["extra"]),
                   config=dict(data["config"]), path=path)
