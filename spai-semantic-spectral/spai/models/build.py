"""Model construction and checkpoint loading (SPAI checkpoints and MFM pre-training checkpoints)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from common_utils.train import load_state_dict_strict

from ..utils import load_checkpoint_file, load_state_dict_checked
from .mfm import is_mfm_state_dict, mfm_to_vit_state_dict
from .sid import SEMANTIC_MODULES, SEMANTIC_TOWER, PatchBasedMFViT

log = logging.getLogger(__name__)


class Loaded(NamedTuple):
    """What :func:`load_pretrained` read: the file's format, its stored epoch, whether it set the ViT's weights."""

    kind: str  # "mfm" (backbone only) or "spai" (whole model)
    epoch: int
    covers_backbone: bool


def build_cls_model(cfg) -> PatchBasedMFViT:
    return PatchBasedMFViT(cfg)


def load_mfm_backbone(model: PatchBasedMFViT, state_dict: dict, source: str = "MFM checkpoint") -> list[str]:
    """Load an MFM pre-training state dict into ``model.mfvit.vit`` through the key map, strictly.

    Every ViT tensor must come from the file and every file tensor must be mapped or dropped by name (the
    decoder and the final LayerNorm, listed in the log). Returns the dropped keys.
    """
    if model.mfvit.clip_backbone:
        raise ValueError(f"{source}: an MFM checkpoint holds a ViT backbone, but MODEL_WEIGHTS=clip uses CLIP")
    vit_state, dropped = mfm_to_vit_state_dict(state_dict)
    load_state_dict_strict(model.mfvit.vit, vit_state, source=f"{source} (MFM encoder.* -> mfvit.vit.*)")
    log.info("%s: MFM pre-training checkpoint: %d tensors loaded into mfvit.vit, %d MFM-only tensors dropped (%s)",
             source, len(vit_state), len(dropped), ", ".join(dropped))
    return dropped


def load_pretrained(model: PatchBasedMFViT, path: str | Path) -> Loaded:
    """Load ``path`` into ``model`` with every tensor accounted for.

    - An MFM pre-training checkpoint (``model`` holds ``encoder.*`` / ``decoder.*`` keys, as the MFM repository's
      ``mfm_pretrain_vit_base.pth``): only the ViT is set, through :func:`load_mfm_backbone`; the SPAI modules keep
      their initialisation.
    - A SPAI checkpoint (``spai.pth`` or our exports): the whole model. The semantic tower (loaded from its own
      file) may be absent. The semantic-spectral modules may be absent only from a checkpoint that has none of them
      (the released base-SPAI format: they stay zero-initialised, i.e. the identity); a checkpoint trained with
      them must hold all of them. Every other key must match by name and shape.
    """
    ckpt = load_checkpoint_file(path)
    epoch = int(ckpt.get("epoch", -1))
    if is_mfm_state_dict(ckpt["model"]):
        load_mfm_backbone(model, ckpt["model"], source=str(path))
        return Loaded("mfm", epoch, True)
    has_semantic = any(k.startswith(SEMANTIC_MODULES) for k in ckpt["model"])
    allowed = (SEMANTIC_TOWER,) if has_semantic else SEMANTIC_MODULES + (SEMANTIC_TOWER,)
    load_state_dict_checked(model, ckpt["model"], allowed_missing=allowed, source=str(path))
    log.info("loaded %s (epoch %s)", path, ckpt.get("epoch"))
    return Loaded("spai", epoch, True)
