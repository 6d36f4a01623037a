"""Strict state-dict loading with a readable error, and the readers of upstream-format checkpoints."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from common_utils.train import load_checkpoint


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
