"""The run directory: refuses to clobber another run, holds config.yaml, metrics.jsonl and last.pth consistently.

Lifecycle of a trainer::

    run = RunDir(cfg.run_dir, ctx, resume=args.resume, overwrite=args.overwrite)  # may refuse (RunDirError)
    ... build datasets and model (this validates config and data) ...
    run.write_config(cfg)
    state = TrainState(models={"model": net}, optimizers={"model": opt}, steppers={"model": step})
    resumed = run.resume(state)                 # None for a fresh start; restores everything otherwise
    for epoch in range(run.start_epoch, epochs):
        ... train, validate; write exports such as best_model.pth here ...
        run.end_epoch(state, {"train_loss": ..., "val_auc": ...}, extra={"best_val_auc": best})
    run.close()

``end_epoch`` saves ``last.pth`` first (its ``history`` holds every epoch's row), then appends the row to
``metrics.jsonl`` (and the optional CSV and TensorBoard). On resume ``metrics.jsonl`` and the CSV are rewritten from
the checkpoint's history, so a kill -9 at any point leaves no duplicated and no missing epoch. Exports written
before ``end_epoch`` are re-created identically when the interrupted epoch is re-run.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from .checkpoint import resolve_resume
from .config import prepare_run_dir
from .distributed import DistContext, barrier
from .run_state import Resumed, TrainState, load_run_state, save_run_state

log = logging.getLogger(__name__)

LAST = "last.pth"
METRICS = "metrics.jsonl"
FAULT_ENV = "COMMON_UTILS_FAULT"  # tests: "<point>:<epoch>" kills this process (SIGKILL) at that point


class RunDirError(RuntimeError):
    """A run directory that holds another run, or a resume that cannot be honoured."""


def _plain(value):
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _fault(point: str, epoch: int) -> None:
    """Kill this process with SIGKILL when ``$COMMON_UTILS_FAULT`` is ``point:epoch`` (crash-consistency tests)."""
    if os.environ.get(FAULT_ENV) == f"{point}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


class RunDir:
    """One trainer's run directory (see the module docstring).

    Args:
        path: the directory.
        ctx: the process's :class:`DistContext`; only rank 0 writes.
        resume: ``None``/``""`` (fresh start), ``"auto"`` (``last.pth`` if present, else fresh) or a run-state file.
        overwrite: start afresh in a directory that holds another run, deleting that run's checkpoints and logs.
        csv_name, csv_columns: also keep a per-epoch CSV (e.g. ``training_log.csv``) with these columns.
        tensorboard: also write TensorBoard scalars under ``tensorboard/``.
    """

    def __init__(self, path: str | os.PathLike, ctx: DistContext, *, resume: str | os.PathLike | None = None,
                 overwrite: bool = False, csv_name: str | None = None, csv_columns: Sequence[str] = (),
                 tensorboard: bool = True):
        self.path, self.ctx = Path(path), ctx
        self.csv_name, self.csv_columns, self.tensorboard = csv_name, list(csv_columns), tensorboard
        self.resume_path = resolve_resume(resume, self.path / LAST)
        self.history: list[dict] = []
        self.start_epoch = 0
        self.config: dict | None = None
        self._tb = None
        if ctx.is_main:
            self._check_not_another_run(resumed=resume not in (None, ""), overwrite=overwrite)
            self.path.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_files()
        barrier()

    # -- start ---------------------------------------------------------------------------------------------------
    def _run_files(self) -> list[Path]:
        """Checkpoints and logs of a run in this directory."""
        if not self.path.is_dir():
            return []
        found = [p for p in (self.path / METRICS, self.path / LAST) if p.is_file()]
        found += sorted(self.path.glob("*.pth")) + sorted((self.path / "checkpoints").glob("*.pth"))
        return sorted(set(found))

    def _check_not_another_run(self, resumed: bool, overwrite: bool) -> None:
        files = self._run_files()
        if not files or (resumed and self.resume_path is not None):
            return
        if resumed and self.resume_path is None:
            # --resume auto, and the previous attempt died before its first last.pth: only its logs and exports of
            # that first epoch are here; start afresh
            log.warning("--resume auto: no %s in %s; removing the interrupted attempt's files and starting afresh",
                        LAST, self.path)
            self._delete_run_files(files)
            return
        if not overwrite:
            names = ", ".join(str(p.relative_to(self.path)) for p in files[:4])
            raise RunDirError(f"{self.path} holds another run ({names}); pass --resume auto to continue it, "
                              f"--overwrite to delete it and start afresh, or choose another run_dir")
        log.warning("--overwrite: deleting the previous run's files in %s", self.path)
        self._delete_run_files(files)

    def _delete_run_files(self, files: list[Path]) -> None:
        for p in files:
            p.unlink(missing_ok=True)
        for name in ("config.yaml", self.csv_name):
            if name:
                (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / "tensorboard", ignore_errors=True)

    def _remove_stale_temp_files(self) -> None:
        """Temp files of a save that was interrupted (``.<name>.<random>.tmp``), here and in ``checkpoints/``."""
        for folder in (self.path, self.path / "checkpoints"):
            for tmp in folder.glob(".*.tmp"):
                log.info("removing %s, left by an interrupted save", tmp)
                tmp.unlink(missing_ok=True)

    def write_config(self, cfg) -> None:
        """Write the resolved ``config.yaml``; call it once the config and the data have been validated.

        The same resolved config is stored in every ``last.pth``.
        """
        prepare_run_dir(self.path, cfg, self.ctx.is_main)
        self.config = _to_container(cfg)

    def resume(self, state: TrainState) -> Resumed | None:
        """Restore ``state`` from the resume checkpoint (if any) and rewrite the logs from its history."""
        resumed = load_run_state(self.resume_path, state, self.ctx) if self.resume_path is not None else None
        if resumed is not None:
            self.start_epoch, self.history = resumed.epoch, resumed.history
            if self.ctx.is_main:
                log.info("resumed from %s after %d epoch(s)", resumed.path, resumed.epoch)
        if self.ctx.is_main:
            self._rewrite_logs()
            if self.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                # events logged after the checkpoint by an interrupted run are dropped
                self._tb = SummaryWriter(log_dir=str(self.path / "tensorboard"), purge_step=self.start_epoch + 1)
        barrier()
        return resumed

    # -- each epoch ----------------------------------------------------------------------------------------------
    def end_epoch(self, state: TrainState, row: Mapping, *, extra: Mapping | None = None) -> dict:
        """Record the epoch just completed: ``last.pth`` (with ``row`` in its history), then the logs.

        Collective (every rank calls it). Returns the row as logged, with ``epoch`` = completed epochs.
        """
        epoch = len(self.history) + 1
        logged = {"epoch": epoch, **{k: _plain(v) for k, v in row.items()}}
        self.history.append(logged)
        _fault("before_checkpoint", epoch)
        save_run_state(self.path / LAST, state, self.ctx, epoch=epoch, history=self.history, config=self.config,
                       extra=extra)
        _fault("after_checkpoint", epoch)
        if self.ctx.is_main:
            with open(self.path / METRICS, "a") as f:
                f.write(json.dumps(logged) + "\n")
            self._write_csv()
            if self._tb is not None:
                for key, value in logged.items():
                    if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                        self._tb.add_scalar(key, value, epoch)
                self._tb.flush()
        _fault("after_metrics", epoch)
        barrier()
        return logged

    def _rewrite_logs(self) -> None:
        tmp = self.path / f".{METRICS}.tmp"
        tmp.write_text("".join(json.dumps(row) + "\n" for row in self.history))
        os.replace(tmp, self.path / METRICS)
        self._write_csv()

    def _write_csv(self) -> None:
        if not self.csv_name:
            return
        tmp = self.path / f".{self.csv_name}.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.csv_columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.history)
        os.replace(tmp, self.path / self.csv_name)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _to_container(config) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)
