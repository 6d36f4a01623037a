"""AdamW with layer-wise learning-rate decay over the real parameter names of PatchBasedMFViT."""
from __future__ import annotations

import re

import torch
from common_utils.train import adamw
from torch import nn

_BLOCK = re.compile(r"mfvit\.(?:vit\.blocks|early_fusion_gates)\.(\d+)\.")


def layer_id(name: str, depth: int) -> int:
    """0 for the ViT embeddings, i + 1 for ViT block i (and the fusion gate after it), depth + 1 otherwise."""
    if name.startswith(("mfvit.vit.patch_embed.", "mfvit.vit.cls_token", "mfvit.vit.pos_embed")):
        return 0
    m = _BLOCK.match(name)
    return int(m.group(1)) + 1 if m else depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float, depth: int) -> list[dict]:
    """One group per (layer, decay/no-decay); ``lr_scale`` = layer_decay ** (depth + 1 - layer id).

    Parameters that can never train (the frozen semantic tower; the ViT when MODEL.FREEZE_BACKBONE and it
    has no fusion gate) are left out. 1-d tensors and tokens get no weight decay.
    """
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, depth)
        no_decay = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "patch_aggregator", "alpha"))
        g = groups.setdefault((lid, no_decay), {"params": [], "names": [], "layer_id": lid,
                                                 "weight_decay": 0.0 if no_decay else weight_decay,
                                                 "lr_scale": layer_decay ** (depth + 1 - lid)})
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(cfg, model: nn.Module) -> torch.optim.AdamW:
    """common_utils' AdamW (fused kernel where possible) over :func:`param_groups`."""
    t = cfg.TRAIN
    groups = param_groups(model, t.WEIGHT_DECAY, t.LAYER_DECAY, cfg.MODEL.VIT.DEPTH)
    return adamw(groups, lr=t.BASE_LR, weight_decay=t.WEIGHT_DECAY, betas=tuple(t.OPTIMIZER.BETAS),
                 eps=t.OPTIMIZER.EPS)
