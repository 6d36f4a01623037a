"""Frozen open_clip image tower giving the semantic context of a patch."""
from __future__ import annotations

import logging

import open_clip
import torch
import torch.nn.functional as F
from common_utils.clip_weights import load_open_clip
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn

log = logging.getLogger(__name__)

# A tiny random-init CLIP for tests and the demo (real towers come from open_clip configs + a local file).
TINY_CLIP = dict(embed_dim=32,
                 vision_cfg=dict(image_size=64, patch_size=16, width=32, layers=2, head_width=16),
                 text_cfg=dict(context_length=8, vocab_size=64, width=16, heads=1, layers=1))


class SemanticTower(nn.Module):
    """open_clip ``visual`` tower, frozen and always in eval mode.

    forward(x [P, 3, S, S] in [0, 1]) -> (vector [P, embed_dim], tokens [P, T, width]).
    """

    def __init__(self, model_name: str = "ViT-B-16", weights: str = ""):
        super().__init__()
        if model_name == "tiny":
            if weights:
                raise ValueError("MODEL.SEMANTIC.CLIP_MODEL=tiny is random-init; CLIP_WEIGHTS must be empty")
            clip = open_clip.CLIP(**TINY_CLIP)
        elif weights:  # OpenAI .pt or open_clip file, read without running pickled code
            clip = load_open_clip(model_name, weights, what="MODEL.SEMANTIC.CLIP_WEIGHTS")
        else:
            log.warning("semantic tower %s: no MODEL.SEMANTIC.CLIP_WEIGHTS given, random init", model_name)
            clip = open_clip.create_model(model_name)
        self.pretrained = bool(weights)
        self.visual = clip.visual
        self.visual.output_tokens = True
        self.image_size = self.visual.image_size[0]
        self.embed_dim = self.visual.output_dim
        self.width = self.visual.conv1.out_channels
        self.register_buffer("mean", torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", antialias=True,
                              align_corners=False)
        vector, tokens = self.visual((x - self.mean) / self.std)
        return vector, tokens


class CLIPSpectralBackbone(nn.Module):
    """The design's ``MODEL_WEIGHTS: clip``: a frozen open_clip image tower as the *spectral* backbone.

    As upstream's CLIPBackbone it returns the output of every block's ``ln_2`` (LayerNorm-ed pre-MLP
    activations, CLS dropped) for ``intermediate_layers``: [B, N, L, width]. Its input is CLIP-normalised.
    It cannot reuse spai.pth's MFM ViT weights (loading one into it lists the mismatched keys).
    """

    def __init__(self, model_name: str, weights: str, intermediate_layers):
        super().__init__()
        self.tower = SemanticTower(model_name, weights)
        self.blocks = self.tower.visual.transformer.resblocks
        self.intermediate_layers = list(intermediate_layers)
        self._ln2 = []
        for blk in self.blocks:
            blk.ln_2.register_forward_hook(lambda m, i, o: self._ln2.append(o))

    def release_hooks(self) -> None:
        """Drop the ln_2 outputs a forward of the tower on its own (the semantic context) left behind."""
        self._ln2.clear()

    def forward(self, x: torch.Tensor, after_block=None, grad_from: int = 0) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_from <= 0):
            x = self.tower.visual._embeds(x)
        outs = []
        for i, blk in enumerate(self.blocks):
            self._ln2.clear()
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= grad_from):
                x = blk(x)
            if after_block and i in after_block:
                x = after_block[i](x)
            if i in self.intermediate_layers:
                outs.append(self._ln2[0][:, 1:])
        self._ln2.clear()
        return torch.stack(outs, dim=1)
