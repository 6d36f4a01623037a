"""Stage 2: independent dual adapter with cross-attention fusion (the design document, section 7)."""
from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from common_utils.train import load_state_dict_strict
from torch import nn

from .additive_adapter import AdditiveAdapter
from .checkpoint_io import read_stage1_adapter, read_stage2_heads
from .clip_backbone import FrozenCLIPImageEncoder
from .cross_attention_fusion import CrossAttentionFusionWithDynamicGate

log = logging.getLogger(__name__)

KV_MODES = ("tokens", "global")


class Stage2IndependentAdapterModel(nn.Module):
    """Frozen CLIP -> frozen Stage 1 adapter (fairness) and trainable Stage 2 adapter (detection), both on the CLIP
    feature; cross-attention fusion (Stage 2 queries Stage 1) with a dynamic gate; MLP classifier D->384->192->2.

    forward(data_dict): 'image' [B,3,H,W], or cached 'clip_feat' [B,D] (raw ``encode_image`` output) and, in
    ``kv='tokens'`` mode, 'clip_tokens' [B,K,D] (D = the encoder's feature size, 768 for ViT-L/14). Returns every key
    of the design (clip_features, stage1_features, stage2_features, fused_features, fused_features_norm, gate,
    attn_weights, cls, prob) plus ``feat`` (the
    classifier input, read by DeepfakeBench-style trainers), ``stage1_tokens`` and the fusion intermediates.
    Attribute names follow the upstream state dict (``binary_classifier``, ``fusion.*``, ...).
    """

    def __init__(self, clip_model: FrozenCLIPImageEncoder | None, feature_dim: int,
                 stage1_hidden_dim: int = 512, stage2_hidden_dim: int = 384,
                 classifier_hidden_dims: tuple[int, int] = (384, 192), num_classes: int = 2, dropout: float = 0.1,
                 fusion_num_heads: int = 8, gate_bias: float = 0.0, kv: str = "tokens", mix: str = "unit"):
        super().__init__()
        if kv not in KV_MODES:
            raise ValueError(f"fusion.kv must be one of {KV_MODES}, got {kv!r}")
        if kv == "tokens" and clip_model is not None and not clip_model.token_layers:
            raise ValueError("fusion.kv 'tokens' needs clip.token_layers (CLS tokens of which CLIP layers)")
        self.kv = kv
        self.clip_model = clip_model
        self.stage1_adapter = AdditiveAdapter(feature_dim, stage1_hidden_dim, dropout)
        self.stage1_adapter.requires_grad_(False)
        self.stage2_adapter = AdditiveAdapter(feature_dim, stage2_hidden_dim, dropout)
        self.fusion = CrossAttentionFusionWithDynamicGate(feature_dim, fusion_num_heads, dropout, gate_bias, mix)
        h1, h2 = classifier_hidden_dims
        self.binary_classifier = nn.Sequential(
            nn.Linear(feature_dim, h1), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(h1, h2), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(h2, num_classes),
        )

    def train(self, mode: bool = True):
        super().train(mode)
        self.stage1_adapter.eval()  # frozen: no dropout
        return self

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def heads(self) -> nn.ModuleDict:
        """The four head modules (everything but the frozen CLIP) under the upstream key names (``stage2_heads.pth``);
        the module a run state and our exports hold."""
        return nn.ModuleDict({"stage1_adapter": self.stage1_adapter, "stage2_adapter": self.stage2_adapter,
                              "fusion": self.fusion, "binary_classifier": self.binary_classifier})

    def heads_state_dict(self) -> dict[str, torch.Tensor]:
        return self.heads().state_dict()

    def load_heads_state_dict(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Strict load of the four head modules (upstream ``stage2_heads.pth`` key names; ``module.`` stripped)."""
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        load_state_dict_strict(self.heads(), state, source)

    def load_stage1_checkpoint(self, path: str | os.PathLike) -> None:
        """Load the frozen Stage 1 adapter from a Stage 1 checkpoint (ours or upstream's); every key is checked."""
        load_state_dict_strict(self.stage1_adapter, read_stage1_adapter(path), f"Stage 1 checkpoint {path}")
        self.stage1_adapter.requires_grad_(False)
        log.info("loaded Stage 1 adapter from %s", path)

    # ---- forward -----------------------------------------------------------------------------------------------
    def encode(self, data_dict: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw CLIP feature [B,D] and tokens [B,K,D] (from the cache if present, else through CLIP)."""
        if "clip_feat" in data_dict:
            return data_dict["clip_feat"], data_dict.get("clip_tokens")
        return self.clip_model(data_dict["image"])

    def forward(self, data_dict: dict) -> dict[str, torch.Tensor]:
        raw, raw_tokens = self.encode(data_dict)
        clip_feat = F.normalize(raw.float(), dim=-1)

        with torch.no_grad():  # frozen Stage 1 (global fairness)
            stage1_add = self.stage1_adapter(clip_feat)
            stage1_feat = F.normalize(clip_feat + stage1_add, dim=-1)
            stage1_tokens = None
            if self.kv == "tokens":
                if raw_tokens is None:
                    raise KeyError("fusion.kv 'tokens' needs CLIP tokens: data_dict has 'clip_feat' but no "
                                   "'clip_tokens'")
                tok = F.normalize(raw_tokens.float(), dim=-1)  # [B,K,D]
                stage1_tokens = F.normalize(tok + self.stage1_adapter(tok), dim=-1)

        stage2_add = self.stage2_adapter(clip_feat)  # Stage 2 reads the CLIP feature directly
        stage2_feat = clip_feat + stage2_add

        fused, gate, attn_weights, extras = self.fusion(stage2_feat, stage1_feat, stage1_tokens)
        fused_norm = F.normalize(fused, dim=-1)
        logits = self.binary_classifier(fused_norm)
        return {
            "clip_features": clip_feat, "stage1_add": stage1_add, "stage1_features": stage1_feat,
            "stage1_tokens": stage1_tokens, "stage2_add": stage2_add, "stage2_features": stage2_feat,
            "fused_features": fused, "fused_features_norm": fused_norm, "feat": fused_norm,
            "gate": gate, "attn_weights": attn_weights, "cls": logits, "prob": torch.softmax(logits, dim=1)[:, 1],
            **{f"fusion_{k}": v for k, v in extras.items()},
        }


def build_model(cfg, encoder: FrozenCLIPImageEncoder | None, feature_dim: int | None = None
                ) -> Stage2IndependentAdapterModel:
    """Stage 2 model of a Stage 2 config (``model`` and ``fusion`` sections). The feature size is the encoder's;
    ``encoder=None`` builds the heads alone for cached features of size ``feature_dim``."""
    m = cfg.model
    feature_dim = encoder.output_dim if encoder is not None else feature_dim
    return Stage2IndependentAdapterModel(encoder, feature_dim, m.stage1_hidden_dim, m.stage2_hidden_dim,
                                         tuple(m.classifier_hidden_dims), 2, m.dropout, m.fusion_num_heads,
                                         cfg.fusion.gate_bias, cfg.fusion.kv, cfg.fusion.mix)


def load_trained(cfg, encoder: FrozenCLIPImageEncoder, checkpoint: str | os.PathLike,
                 device: torch.device | str = "cpu") -> Stage2IndependentAdapterModel:
    """A Stage 2 model in eval mode with the heads of ``checkpoint`` (our ``best.pth`` export or a run's
    ``last.pth``)."""
    model = build_model(cfg, encoder)
    model.load_heads_state_dict(read_stage2_heads(checkpoint), str(checkpoint))
    return model.to(device).eval()
