"""The optimisation step every trainer uses: AMP, gradient accumulation, clipping and the non-finite guard.

Usage (one optimizer)::

    step = OptimStep(optimizer, device=ctx.device, precision="bf16", grad_clip=1.0, accum_steps=4,
                     model=model, scheduler=scheduler)
    for epoch in range(start, epochs):
        step.begin_epoch(epoch, len(loader))
        for x, y in loader:
            with step.autocast():          # autocast, and DDP ``no_sync`` while gradients accumulate
                loss = criterion(model(x), y)
            logged = step(loss)            # backward; optimizer step at the end of each accumulation group
            if logged["stepped"] and ema is not None:
                ema.update(model_without_ddp, step=logged["step"])

Accumulation groups are ``accum_steps`` consecutive batches. The default ``trailing="mean"`` also steps on the
trailing partial group of an epoch (10 batches with ``accum_steps=4`` -> groups of 4, 4, 2), dividing each loss by
its group's real size so that every step follows the mean gradient of the batches it saw. ``trailing="drop"`` is
the rule of SPAI's upstream trainer: losses are always divided by ``accum_steps`` and the gradients of a trailing
partial group are discarded at the end of the epoch.
"""
from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager

import torch
from torch.nn.parallel import DistributedDataParallel

from .guards import NonFiniteLossError, autocast_context, make_grad_scaler

TRAILING_RULES = ("mean", "drop")


def step_options(train_cfg) -> dict:
    """The shared knobs of a config's training section as :class:`OptimStep` keywords.

    Every trainer names them alike: ``precision`` (fp32|bf16|fp16), ``grad_clip`` (0 = off), ``accum_steps``.
    """
    return {"precision": train_cfg.precision, "grad_clip": float(train_cfg.grad_clip),
            "accum_steps": int(train_cfg.accum_steps)}


class OptimStep:
    """One optimizer's step: scale -> backward -> (group end) unscale -> clip -> step -> update -> zero_grad.

    Args:
        optimizer: the optimizer to step.
        device: where the model runs (autocast device type, scaler).
        precision: ``fp32``, ``bf16`` (autocast, no scaler) or ``fp16`` (autocast with a dynamic ``GradScaler``).
        grad_clip: max global L2 norm of the gradients; ``0`` disables clipping (the norm is then not computed).
        accum_steps: batches per optimizer step.
        model: the (possibly DDP-wrapped) module; under DDP gradients are all-reduced only on a group's last batch.
        scheduler: stepped after every optimizer step (per-step schedules); leave ``None`` for per-epoch schedules.
        params: the parameters to clip; by default every parameter of ``optimizer``.
        trailing: what to do with an epoch's trailing partial accumulation group (module docstring).
        name: names this step in error messages (e.g. ``generator``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, device: torch.device | str, precision: str = "fp32",
                 grad_clip: float = 0.0, accum_steps: int = 1, model: torch.nn.Module | None = None,
                 scheduler=None, params=None, trailing: str = "mean", name: str = "model"):
        if int(accum_steps) < 1 or int(accum_steps) != accum_steps:
            raise ValueError(f"accum_steps must be a whole number >= 1, got {accum_steps!r}")
        if trailing not in TRAILING_RULES:
            raise ValueError(f"trailing must be one of {TRAILING_RULES}, got {trailing!r}")
        if grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables clipping), got {grad_clip!r}")
        self.optimizer, self.scheduler, self.model = optimizer, scheduler, model
        self.device, self.precision, self.name = torch.device(device), precision, name
        self.grad_clip, self.accum_steps, self.trailing = float(grad_clip), int(accum_steps), trailing
        self.params = list(params) if params is not None else [p for g in optimizer.param_groups for p in g["params"]]
        self.scaler = make_grad_scaler(precision, self.device)
        self.optimizer_steps = 0
        self.epoch, self.n_batches, self.batch = 0, 0, 0

    # -- per epoch -----------------------------------------------------------------------------------------------
    def begin_epoch(self, epoch: int, n_batches: int) -> None:
        """Start epoch ``epoch`` (0-based) of ``n_batches`` batches; clears any gradient left over."""
        if n_batches < 1:
            raise ValueError(f"epoch {epoch} has no batches: the loader is empty")
        self.epoch, self.n_batches, self.batch = int(epoch), int(n_batches), 0
        self.optimizer.zero_grad(set_to_none=True)

    def steps_per_epoch(self, n_batches: int) -> int:
        """Optimizer steps an epoch of ``n_batches`` batches makes under this step's accumulation rule."""
        if self.trailing == "drop":
            return n_batches // self.accum_steps
        return math.ceil(n_batches / self.accum_steps)

    # -- per batch -----------------------------------------------------------------------------------------------
    def _group(self) -> tuple[int, bool]:
        """(size of the current batch's accumulation group, whether the batch closes it)."""
        start = self.batch - self.batch % self.accum_steps
        full = start + self.accum_steps <= self.n_batches
        size = self.accum_steps if full or self.trailing == "drop" else self.n_batches - start
        last = self.batch + 1 == self.n_batches
        closes = self.batch + 1 == start + self.accum_steps or (self.trailing == "mean" and last)
        return size, closes

    @property
    def will_step(self) -> bool:
        """Whether the next call makes an optimizer step (e.g. to set a learning rate just before it)."""
        return self._group()[1]

    @contextmanager
    def autocast(self):
        """Autocast for the forward pass; under DDP also ``no_sync`` on batches that do not close a group."""
        if self.n_batches == 0:
            raise RuntimeError("call begin_epoch(epoch, n_batches) before the first batch of an epoch")
        with ExitStack() as stack:
            if isinstance(self.model, DistributedDataParallel) and not self.will_step:
                stack.enter_context(self.model.no_sync())
            stack.enter_context(autocast_context(self.device, self.precision))
            yield

    def __call__(self, loss: torch.Tensor) -> dict:
        """Backward ``loss`` (the batch's mean loss) and step at the end of its accumulation group.

        Returns what it logged: ``loss`` (float), ``stepped`` (bool), ``step`` (optimizer steps so far), ``lr``
        (first param group), ``grad_norm`` (pre-clip total norm, when clipping) and ``scale`` (fp16 loss scale).
        Raises :class:`NonFiniteLossError` naming the epoch, batch and optimizer step for a NaN/inf loss.
        """
        if self.batch >= self.n_batches:
            raise RuntimeError(f"{self.name}: more batches than the {self.n_batches} given to begin_epoch")
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"non-finite {self.name} loss {value} at epoch {self.epoch + 1}, batch {self.batch + 1}/"
                f"{self.n_batches} (optimizer step {self.optimizer_steps + 1}); the last saved checkpoint is kept")
        size, closes = self._group()
        self.scaler.scale(loss / size).backward()
        self.batch += 1
        out = {"loss": value, "stepped": False, "step": self.optimizer_steps,
               "lr": self.optimizer.param_groups[0]["lr"]}
        if closes:
            out.update(self._step())
        elif self.trailing == "drop" and self.batch == self.n_batches:
            self.optimizer.zero_grad(set_to_none=True)  # upstream SPAI: a trailing partial group never steps
        return out

    def _step(self) -> dict:
        out = {"stepped": True}
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            out["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip))
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer_steps += 1
        if self.scheduler is not None:
            self.scheduler.step()
        out.update(step=self.optimizer_steps, lr=lr)
        if self.scaler.is_enabled():
            out["scale"] = float(self.scaler.get_scale())
        return out

    # -- run state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict(), "optimizer_steps": self.optimizer_steps}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.optimizer_steps = int(state.get("optimizer_steps", 0))
