"""Readers of the checkpoints a stage loads: Stage 1 adapters (ours, a run state, or upstream's) and Stage 2 heads."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from common_utils.train import load_checkpoint
from common_utils.train.run_state import FORMAT as RUN_STATE_FORMAT


def strip_prefix(key: str, prefix: str = "module.") -> str:
    while key.startswith(prefix):
        key = key[len(prefix):]
    return key


def read_stage1_adapter(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Stage 1 adapter weights from a Stage 1 checkpoint (ours or the upstream format).

    Accepts ``{'model_state_dict': sd, ...}`` (our ``best.pth`` export, upstream's checkpoints), a bare state dict, or a
    Stage 1 run state (``last.pth``: ``models.model`` holds the adapter); strips DDP ``module.`` prefixes; keeps the
    ``additive_adapter.*`` keys (upstream also saves the whole CLIP and race/gender heads: ignored) and casts
    float16 tensors to float32. Returns the adapter's own keys (``adapter.{0,3,6}.{weight,bias}``).
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    if isinstance(ckpt, dict) and ckpt.get("format") == RUN_STATE_FORMAT:  # a Stage 1 run's last.pth
        return {k: v.float() for k, v in ckpt["models"]["model"].items()}
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


def read_stage2_heads(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Stage 2 head weights from our ``best.pth`` export (``model_state_dict``) or a Stage 2 run state (``last.pth``:
    ``models.model``)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    if isinstance(ckpt, dict) and ckpt.get("format") == RUN_STATE_FORMAT:
        return ckpt["models"]["model"]
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model_state_dict"), dict):
        return ckpt["model_state_dict"]
    keys = sorted(map(str, ckpt))[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise KeyError(f"{path}: not a Stage 2 checkpoint (top-level keys {keys}); pass a Stage 2 run's best.pth or "
                   f"last.pth")
