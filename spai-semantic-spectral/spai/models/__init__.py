from .build import Loaded, build_cls_model, load_mfm_backbone, load_pretrained
from .sid import STATISTICS_12, PatchBasedMFViT

__all__ = ["Loaded", "build_cls_model", "load_mfm_backbone", "load_pretrained", "PatchBasedMFViT", "STATISTICS_12"]
