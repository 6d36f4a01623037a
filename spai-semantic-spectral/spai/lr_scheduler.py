"""Per-step linear warm-up then cosine decay; a pure function of the step, so resume needs no state."""
from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, warmup_lr: float, min_lr: float) -> float:
    if step < warmup_steps:
        return warmup_lr + (base_lr - warmup_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
