"""Model construction and checkpoint loading."""
from __future__ import annotations

import logging
from pathlib import Path

from ..utils import load_checkpoint_file, load_state_dict_checked
from .sid import SEMANTIC_MODULES, SEMANTIC_TOWER, PatchBasedMFViT

log = logging.getLogger(__name__)


def build_cls_model(cfg) -> PatchBasedMFViT:
    return PatchBasedMFViT(cfg)


def load_pretrained(model: PatchBasedMFViT, path: str | Path) -> int:
    """Load ``spai.pth`` (or one of our checkpoints) into ``model`` with every tensor accounted for.

    The semantic tower (loaded from its own file) may be absent. The semantic-spectral modules may be absent only
    from a checkpoint that has none of them (the released base-SPAI format: they stay zero-initialised, i.e. the
    identity); a checkpoint trained with them must hold all of them. Every other key must match by name and shape.
    Returns the stored epoch.
    """
    ckpt = load_checkpoint_file(path)
    has_semantic = any(k.startswith(SEMANTIC_MODULES) for k in ckpt["model"])
    allowed = (SEMANTIC_TOWER,) if has_semantic else SEMANTIC_MODULES + (SEMANTIC_TOWER,)
    load_state_dict_checked(model, ckpt["model"], allowed_missing=allowed, source=str(path))
    log.info("loaded %s (epoch %s)", path, ckpt.get("epoch"))
    return int(ckpt.get("epoch", -1))
