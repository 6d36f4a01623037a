from .build import build_cls_model, load_pretrained
from .sid import STATISTICS_12, PatchBasedMFViT

__all__ = ["build_cls_model", "load_pretrained", "PatchBasedMFViT", "STATISTICS_12"]
