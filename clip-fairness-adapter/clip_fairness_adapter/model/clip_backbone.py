"""Frozen open_clip image tower: the global 768-d feature plus a set of projected CLS tokens of chosen layers.

Real runs use OpenAI ViT-L/14 (QuickGELU) from a local file: the TorchScript ``ViT-L-14.pt`` (its tensors are read
without running the archive, then open_clip rebuilds the model), or an open_clip state dict loaded into
``ViT-L-14-quickgelu`` (a plain ``ViT-L-14`` would silently use nn.GELU). See ``common_utils.clip_weights``.
``clip.pretrained: null`` builds the named config with random weights (tests, demo) and logs that it did.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
from common_utils.clip_weights import load_open_clip
from torch import nn

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# tiny random-init config for tests and the demo (same code path as ViT-L/14, QuickGELU, 768-d output). Mean pooling of
# the patch tokens: a random 2-layer ViT's CLS token barely depends on the image, the mean of its patch tokens does.
TINY_VISION_CFG = dict(image_size=128, layers=2, width=64, patch_size=16, head_width=32, pool_type="avg")


def _build_visual(name: str, pretrained: str | None) -> nn.Module:
    if name == "tiny":
        if pretrained:
            raise ValueError("clip.name 'tiny' is a random-init test config; clip.pretrained must be null")
        model = open_clip.CLIP(embed_dim=768, vision_cfg=TINY_VISION_CFG,
                               text_cfg=dict(context_length=8, vocab_size=64, width=32, heads=2, layers=1),
                               quick_gelu=True)
        log.info("CLIP 'tiny': random initialisation (test/demo config)")
        return model.visual
    if pretrained is None:
        model = open_clip.create_model(name, pretrained=None)
        log.warning("CLIP %s: clip.pretrained is null -> RANDOM initialisation", name)
        return model.visual
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"clip.pretrained: weights file not found: {path}")
    if path.suffix != ".pt" and name.startswith("ViT-L-14") and "quickgelu" not in name:
        raise ValueError(f"clip.name '{name}' uses nn.GELU but OpenAI weights need QuickGELU: "
                         f"use 'ViT-L-14-quickgelu'")
    # OpenAI .pt (TorchScript archive or state dict) or an open_clip file, read without running pickled code
    return load_open_clip(name, path, what="clip.pretrained").visual


class FrozenCLIPImageEncoder(nn.Module):
    """Frozen CLIP image tower (text tower dropped).

    forward(images [B,3,H,W]) -> (feat [B,768] = ``encode_image`` output, unnormalised;
                                  tokens [B,K,768] = each layer in ``token_layers`` (1-based) read out exactly as the
                                  last one is for ``feat``: ln_post, the model's pooling (CLS token for OpenAI
                                  ViT-L/14), projection. The token of the last layer equals ``feat``.)
    """

    def __init__(self, name: str = "ViT-L-14-quickgelu", pretrained: str | None = None,
                 token_layers: Sequence[int] = ()):
        super().__init__()
        self.visual = _build_visual(name, pretrained)
        n_layers = len(self.visual.transformer.resblocks)
        bad = [i for i in token_layers if not 1 <= int(i) <= n_layers]
        if bad:
            raise ValueError(f"clip.token_layers {list(token_layers)}: layers {bad} outside 1..{n_layers}")
        self.token_layers = [int(i) for i in token_layers]
        self.image_size = self.visual.image_size[0] if isinstance(self.visual.image_size, tuple) \
            else int(self.visual.image_size)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # always eval: frozen

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.token_layers:
            return self.visual(images).float(), None
        out = self.visual.forward_intermediates(images, indices=[i - 1 for i in self.token_layers],
                                                normalize_intermediates=True, output_fmt="NLC",
                                                output_extra_tokens=True)
        pooled = [self.visual._global_pool(torch.cat([prefix, patches], dim=1))[0]  # [B,width] per layer
                  for prefix, patches in zip(out["image_intermediates_prefix"], out["image_intermediates"])]
        tokens = torch.stack(pooled, dim=1) @ self.visual.proj  # [B,K,768]
        return out["image_features"].float(), tokens.float()
