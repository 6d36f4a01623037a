"""Strict state-dict loading with a readable error, and the readers of upstream-format checkpoints."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from common_utils.train import load_checkpoint
from torch import nn


def load_state_dict_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(strict=True)`` after checking keys and shapes; the error lists every problem."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        raise KeyError(f"{source}: state dict does not fit {type(module).__name__}: missing={missing} "
                       f"unexpected={unexpected} mis-shaped={shapes}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def strip_prefix(key: str, prefix: str = "module.") -> str:
    while key.startswith(prefix):
        key = key[len(prefix):]
    return key


def read_stage1_adapter(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Stage 1 adapter weights from a Stage 1 checkpoint (ours or the upstream format).

    Accepts ``{'model_state_dict': sd, ...}`` or a bare state dict; strips DDP ``module.`` prefixes; keeps the
    ``additive_adapter.*`` keys (upstream also saves the whole CLIP and race/gender heads: ignored) and casts
    float16 tensors to float32. Returns the adapter's own keys (``adapter.{0,3,6}.{weight,bias}``).
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    state = ckpt.get("model_state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise KeyError(f"{path}: expected a state dict or a dict with 'model_state_dict', got {type(ckpt).__name__}")
    prefix = "additive_adapter."
    out = {}
    for key, value in state.items():
        key = strip_prefix(key)
        if key.startswith(prefix):
            out[key[len(prefix):]] = value.float()
    if not out:
        sample = list(state)[:5]
        raise KeyError(f"{path}: no 'additive_adapter.*' keys in the Stage 1 checkpoint (first keys: {sample})")
    return out
