"""Loading SPAI checkpoints: the released ``spai.pth`` (pickled yacs CfgNode) and our own ones."""
from __future__ import annotations

import logging
import pickle
import re
import types
from collections import OrderedDict
from pathlib import Path

import torch
from common_utils.train import load_checkpoint, load_state_dict_strict
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


class _ConfigMapping(dict):
    """Stands in for ``yacs.config.CfgNode`` while unpickling."""

    def __setstate__(self, state):
        """yacs' bookkeeping attributes (immutability flag, deprecated/renamed key sets) are discarded."""


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("yacs.config", "CfgNode"): _ConfigMapping,
    # yacs keeps its deprecated/renamed key registries in sets (part of the CfgNode state, discarded)
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
}
_STORAGE_NAMES = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage",
                  "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage"}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_NAMES:
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a SPAI checkpoint")


# a module-like object torch.load accepts as `pickle_module`
restricted_pickle = types.SimpleNamespace(Unpickler=_RestrictedUnpickler, load=pickle.load,
                                          __name__="spai_restricted_pickle")


def _plain(obj):
    if isinstance(obj, dict) and not isinstance(obj, OrderedDict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def load_checkpoint_file(path: str | Path) -> dict:
    """Read a checkpoint without running arbitrary code.

    Our own checkpoints load with ``torch.load(weights_only=True)``; the released ``spai.pth`` pickles a
    yacs CfgNode, which the weights-only loader cannot rebuild, so it is read with a restricted unpickler
    that allows only torch's tensor rebuild functions, OrderedDict and CfgNode (as a plain mapping).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = load_checkpoint(path, map_location="cpu")
    except RuntimeError as e:  # common_utils names the file; the weights-only refusal is the cause
        if not isinstance(e.__cause__, pickle.UnpicklingError):
            raise
        # torch only accepts a pickle_module with weights_only=False; the restricted unpickler is the safety here
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: not a SPAI checkpoint (expected a dict with a 'model' entry)")
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
