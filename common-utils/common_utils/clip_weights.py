"""open_clip models with weights from a local file, read through :func:`common_utils.safe_load.load_weights`.

open_clip's own loaders are not used on files: ``load_openai_model`` hands an OpenAI ``.pt`` to ``torch.jit.load`` and
falls back to a ``torch.load`` without ``weights_only`` (unsafe under ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``).
Here a TorchScript archive is read without running it (its state dict only) and the model is rebuilt by open_clip.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .safe_load import WeightsFileError, load_weights, read_state_dict

log = logging.getLogger(__name__)

# entries a TorchScript CLIP keeps in its state dict that are not weights: OpenAI's scalar attributes, and the causal
# text mask (a non-persistent buffer of open_clip's CLIP, which TorchScript still lists)
NOT_WEIGHTS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def read_openai_clip_state_dict(path: str | os.PathLike, what: str = "CLIP weights") -> dict:
    """State dict of an OpenAI CLIP file: the TorchScript ``ViT-L-14.pt`` or a state dict in OpenAI layout
    (bare, or under ``state_dict`` with DDP ``module.`` prefixes)."""
    obj = load_weights(path, what=what)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = {k.removeprefix("module."): v for k, v in obj["state_dict"].items()}
    if not isinstance(obj, dict) or "visual.conv1.weight" not in obj and "visual.layer1.0.conv1.weight" not in obj:
        raise WeightsFileError(path, f"{what}: not an OpenAI CLIP file (no 'visual.conv1.weight' key); give the "
                                     "OpenAI .pt, or an open_clip state dict file (.bin/.safetensors/.pth)")
    return {k: v for k, v in obj.items() if k not in NOT_WEIGHTS}


def load_open_clip(name: str, path: str | os.PathLike, what: str = "CLIP weights"):
    """An fp32 ``open_clip.CLIP`` in eval mode with the weights of ``path``.

    ``.pt`` files are OpenAI CLIP files (TorchScript archive or OpenAI-layout state dict): the model is built from
    the weights' shapes with QuickGELU, as open_clip's OpenAI loader does (``name`` is not used to size it; OpenAI
    ships fp16 weights, which this keeps). Any other file (open_clip ``.bin``/``.safetensors``/``.pth``) is loaded
    strictly into ``open_clip.create_model(name)``; a mismatch lists every missing/unexpected/mis-shaped key.
    """
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from .train import load_state_dict_strict

    path = Path(path)
    if path.suffix == ".pt":
        state = read_openai_clip_state_dict(path, what)
        model = open_clip.model.build_model_from_openai_state_dict(state, cast_dtype=None).float()
        model.visual.image_mean, model.visual.image_std = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    else:
        state = read_state_dict(path, what=what)
        model = open_clip.create_model(name, pretrained=None)
        load_state_dict_strict(model, state, f"{what} {path}")
    log.info("CLIP %s: loaded weights from %s", name, path)
    return model.eval()
