"""Training-step guards and mixed-precision helpers."""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch


class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN or infinite; the message names the step."""


def check_finite(loss: torch.Tensor | float, step: int) -> None:
    value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(f"non-finite loss {value} at step {step}; the last saved checkpoint is kept")


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device: torch.device | str, precision: str = "fp32"):
    """``torch.autocast`` for ``bf16``/``fp16``, a no-op context for ``fp32``."""
    if precision == "fp32":
        return nullcontext()
    if precision not in _DTYPES:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])


def make_grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


class DivergenceError(NonFiniteLossError):
    """Training diverged: validation produced NaN/inf outputs. The message names the epoch and what to change."""


def check_finite_outputs(values: torch.Tensor, epoch: int, what: str = "validation outputs") -> None:
    """Raise :class:`DivergenceError` when ``values`` (e.g. the epoch's validation logits) hold NaN or inf.

    Call it before computing metrics, so that a diverged model is reported as divergence, not as a metric's
    complaint about its input.
    """
    bad = int((~torch.isfinite(values.detach())).sum())
    if bad:
        raise DivergenceError(f"training diverged: {bad} of {values.numel()} {what} are NaN or infinite after epoch "
                              f"{epoch}; lower the learning rate or enable grad clipping (train.grad_clip); the last "
                              f"good checkpoint is kept")
