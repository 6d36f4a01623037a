"""Frozen open_clip image tower: the global feature plus a set of projected CLS tokens of chosen layers.

Any open_clip image tower loads here; the feature size is the tower's ``output_dim`` (768 for ViT-L/14). Every weights
file is read through ``common_utils.safe_load`` (no pickled code runs, no ``torch.jit.load``).
- OpenAI ViT-L/14: ``clip.name: ViT-L-14-quickgelu`` with ``clip.pretrained`` the TorchScript ``ViT-L-14.pt`` (its
  tensors are read without running the archive, then open_clip rebuilds the model: ``common_utils.clip_weights``) or an
  open_clip state dict (.bin/.safetensors/.pt, bare or open_clip's training checkpoint) loaded strictly into the named
  config. A plain ``ViT-L-14`` with a state-dict file is refused: it would silently use nn.GELU where the OpenAI
  weights need QuickGELU.
- an open_clip folder (``open_clip_config.json`` + ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``,
  the layout open_clip publishes): ``clip.name: local-dir:/path`` (``clip.pretrained`` must be null);
  ``hf-hub:org/repo`` is handed to open_clip.
- an architecture open_clip does not ship: ``clip.model_config: my_arch.json`` (an open_clip model config, registered
  under its file stem) with ``clip.name: my_arch``.
``clip.pretrained: null`` with a config name builds random weights and logs that it did (tests).
"""
from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
from common_utils.clip_weights import load_open_clip
from common_utils.safe_load import read_state_dict
from common_utils.train import load_state_dict_strict
from torch import nn

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SCHEMAS = ("local-dir:", "hf-hub:")
LOCAL_DIR_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's folder layout


def is_torchscript_archive(path: Path) -> bool:
    """OpenAI's released ``ViT-L-14.pt`` is a TorchScript archive (a zip holding ``code/`` and ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def register_model_config(model_config: str | None) -> None:
    """Register an open_clip model-config JSON (its file stem becomes a model name)."""
    if model_config is None:
        return
    path = Path(model_config)
    if not path.is_file():
        raise FileNotFoundError(f"clip.model_config: open_clip model config not found: {path}")
    open_clip.add_model_config(path)


def load_clip(name: str, pretrained: str | None, model_config: str | None = None) -> nn.Module:
    """The whole open_clip model (both towers) as configured; see the module docstring for what loads how."""
    register_model_config(model_config)
    if name.startswith(SCHEMAS):
        if pretrained is not None:
            raise ValueError(f"clip.pretrained must be null with clip.name '{name}': the folder holds the weights")
        if name.startswith("hf-hub:"):
            return open_clip.create_model(name)
        folder = Path(name.removeprefix("local-dir:"))
        weights = [folder / f for f in LOCAL_DIR_WEIGHTS if (folder / f).is_file()]
        if not weights:
            raise FileNotFoundError(f"clip.name '{name}': no {' or '.join(LOCAL_DIR_WEIGHTS)} in {folder}")
        return _strict(open_clip.create_model(name, load_weights=False), weights[0])
    if name not in open_clip.list_models():
        raise ValueError(f"clip.name '{name}' is not an open_clip model; give clip.model_config (an open_clip model "
                         f"config JSON named {name}.json) or a local-dir:/hf-hub: name")
    if pretrained is None:
        log.warning("CLIP %s: clip.pretrained is null -> RANDOM initialisation", name)
        return open_clip.create_model(name, pretrained=None)
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"clip.pretrained: weights file not found: {path}")
    if is_torchscript_archive(path):  # OpenAI's release: read without running it, rebuilt by open_clip
        return load_open_clip(name, path, what="clip.pretrained")
    if name.startswith("ViT-L-14") and "quickgelu" not in name:
        raise ValueError(f"clip.name '{name}' uses nn.GELU but OpenAI weights need QuickGELU: "
                         f"use 'ViT-L-14-quickgelu'")
    return _strict(open_clip.create_model(name, pretrained=None), path)


def _strict(model: nn.Module, path: Path) -> nn.Module:
    """``model`` with the state dict of ``path`` (bare, or open_clip's training checkpoint), every key matched."""
    state = read_state_dict(path, what="clip weights")
    load_state_dict_strict(model, state, f"clip weights {path}")
    log.info("CLIP: loaded weights from %s", path)
    return model.eval()


class FrozenCLIPImageEncoder(nn.Module):
    """Frozen CLIP image tower (text tower dropped); ``output_dim`` is its feature size.

    forward(images [B,3,H,W]) -> (feat [B,D] = ``encode_image`` output, unnormalised;
                                  tokens [B,K,D] = each layer in ``token_layers`` (1-based) read out exactly as the
                                  last one is for ``feat``: ln_post, the model's pooling (CLS token for OpenAI
                                  ViT-L/14), projection. The token of the last layer equals ``feat``.)
    """

    def __init__(self, name: str = "ViT-L-14-quickgelu", pretrained: str | None = None,
                 token_layers: Sequence[int] = (), model_config: str | None = None):
        super().__init__()
        self.visual = load_clip(name, pretrained, model_config).visual
        n_layers = len(self.visual.transformer.resblocks)
        bad = [i for i in token_layers if not 1 <= int(i) <= n_layers]
        if bad:
            raise ValueError(f"clip.token_layers {list(token_layers)}: layers {bad} outside 1..{n_layers}")
        self.token_layers = [int(i) for i in token_layers]
        size = self.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.output_dim = int(self.visual.output_dim)
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
        tokens = torch.stack(pooled, dim=1) @ self.visual.proj  # [B,K,D]
        return out["image_features"].float(), tokens.float()


def build_encoder(clip_cfg, device: torch.device | str = "cpu", channels_last: bool = False) -> FrozenCLIPImageEncoder:
    """The frozen encoder of the ``clip`` config section, on ``device``; checks ``clip.image_size``."""
    encoder = FrozenCLIPImageEncoder(clip_cfg.name, clip_cfg.pretrained, list(clip_cfg.token_layers),
                                     clip_cfg.model_config)
    if encoder.image_size != clip_cfg.image_size:
        raise ValueError(f"clip.image_size {clip_cfg.image_size} != the model's input size {encoder.image_size}")
    encoder = encoder.to(device)
    return encoder.to(memory_format=torch.channels_last) if channels_last else encoder
