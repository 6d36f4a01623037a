"""Stage 1: global (task-agnostic) bias correction of the CLIP feature with an additive adapter."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .additive_adapter import AdditiveAdapter
from .clip_backbone import FrozenCLIPImageEncoder


class FairnessAdapter(nn.Module):
    """Frozen CLIP + trainable ``AdditiveAdapter`` D->hidden->hidden->D (ViT-L/14: 768->512->512->768).

    forward(data_dict with 'image' [B,3,H,W] or cached 'clip_feat' [B,D]) ->
      clip_features [B,D] (L2-normalised CLIP feature), adapter_add [B,D],
      final_features_norm [B,D] = normalize(clip + adapter(clip)).
    Attribute names (``clip_model``, ``additive_adapter``) follow the upstream Stage 1 checkpoint.
    """

    def __init__(self, clip_model: FrozenCLIPImageEncoder | None, feature_dim: int, hidden_dim: int = 512,
                 dropout: float = 0.1):
        super().__init__()
        self.clip_model = clip_model
        self.additive_adapter = AdditiveAdapter(feature_dim, hidden_dim, dropout)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable part under its checkpoint keys ``additive_adapter.*`` (the frozen CLIP is not saved)."""
        return {f"additive_adapter.{k}": v for k, v in self.additive_adapter.state_dict().items()}

    def forward(self, data_dict: dict) -> dict[str, torch.Tensor]:
        if "clip_feat" in data_dict:
            raw = data_dict["clip_feat"]
        else:
            raw, _ = self.clip_model(data_dict["image"])
        clip_feat = F.normalize(raw.float(), dim=-1)
        add = self.additive_adapter(clip_feat)
        return {"clip_features": clip_feat, "adapter_add": add,
                "final_features_norm": F.normalize(clip_feat + add, dim=-1)}


def build_stage1_model(model_cfg, encoder: FrozenCLIPImageEncoder | None,
                       feature_dim: int | None = None) -> FairnessAdapter:
    """Stage 1 model of the ``model`` config section. The feature size is the encoder's; ``encoder=None`` builds the
    adapter alone for cached features of size ``feature_dim``."""
    feature_dim = encoder.output_dim if encoder is not None else feature_dim
    return FairnessAdapter(encoder, feature_dim, model_cfg.hidden_dim, model_cfg.dropout)
