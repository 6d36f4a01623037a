"""Loading SPAI checkpoints: the released ``spai.pth`` (pickled yacs CfgNode) and our own ones."""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path

from common_utils.safe_load import MappingStandIn, WeightsFileError, load_weights
from common_utils.train import load_state_dict_strict
from torch import nn

log = logging.getLogger(__name__)

# Tensors of the released model that upstream builds but never uses in the forward pass (43 in the full
# model). They are accounted for by name: dropped when loading, listed in the log.
UNUSED_UPSTREAM_KEYS = [
    r"mfvit\.vit\.cls_pos_embed",
    r"mfvit\.vit\.actual_cls_token",
    r"mfvit\.vit\.fc_norm\.(weight|bias)",
    r"mfvit\.vit\.cls_blocks\.\d+\..+",
    r"mfvit\.vit\.intermediate_fc_norm\.\d+\.(weight|bias)",
    r"mfvit\.vit\.head\.(weight|bias)",
]
_UNUSED_RE = re.compile("|".join(f"(?:{p})" for p in UNUSED_UPSTREAM_KEYS))

# the one foreign class the released spai.pth pickles: its merged config, read as a plain mapping
SPAI_STAND_INS = {"yacs.config.CfgNode": MappingStandIn}


def _plain(obj):
    if isinstance(obj, dict) and not isinstance(obj, OrderedDict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def load_checkpoint_file(path: str | Path) -> dict:
    """Read a checkpoint without running arbitrary code (``common_utils.safe_load.load_weights``).

    Our own checkpoints load weights-only; the released ``spai.pth`` pickles a yacs CfgNode, which the weights-only
    loader cannot rebuild, so that one class is mapped to a plain mapping and the file is read with a restricted
    unpickler (torch's tensor rebuild functions, OrderedDict, set and CfgNode only), in the zip and legacy formats.
    """
    ckpt = load_weights(path, stand_ins=SPAI_STAND_INS, what="SPAI checkpoint")
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise WeightsFileError(path, "not a SPAI checkpoint (expected a dict with a 'model' entry); give spai.pth "
                                     "or a checkpoint written by python -m spai train")
    if isinstance(ckpt.get("config"), dict):
        ckpt["config"] = _plain(ckpt["config"])
    return ckpt


def convert_upstream_state_dict(state_dict: dict) -> tuple[dict, list[str]]:
    """Key map from the released SPAI layout to ours: drop the never-used upstream tensors.

    Returns (state_dict, dropped keys). Every other key keeps its name.
    """
    out, dropped = OrderedDict(), []
    for k, v in state_dict.items():
        if _UNUSED_RE.fullmatch(k):
            dropped.append(k)
        else:
            out[k] = v
    return out, dropped


def load_state_dict_checked(model: nn.Module, state_dict: dict, allowed_missing: tuple[str, ...] = (),
                            source: str = "checkpoint", assign: bool = False) -> None:
    """Drop the tensors upstream never uses, then a strict load whose error lists every missing / unexpected /
    mis-shaped key. ``allowed_missing``: key prefixes that may be absent (modules that keep their own values).
    """
    state_dict, dropped = convert_upstream_state_dict(state_dict)
    if dropped:
        log.info("%s: dropped %d tensors upstream never uses (%s, ...)", source, len(dropped), dropped[0])
    load_state_dict_strict(model, state_dict, source, allowed_missing, assign=assign)
