"""Masked Frequency Modeling (MFM, Xie et al. 2023): the ViT pre-training SPAI's frozen backbone comes from.

The pre-training model follows the MFM repository's ViT layout (``mfm_pretrain__vit_*.yaml``: no mean pooling,
decoder depth 0), so its state dict is the released checkpoint's ``model`` entry::

    encoder.cls_token, encoder.pos_embed, encoder.patch_embed.proj.*, encoder.blocks.<i>.*   the ViT SPAI uses
    encoder.norm.*                                                                          final LayerNorm
    decoder.0.weight [p*p*3, D, 1, 1], decoder.0.bias                                       1x1 conv + PixelShuffle(p)

An image in [0, 1] is corrupted by removing a band of its centred spectrum (low-pass with probability
``SAMPLE_RATIO``, else high-pass, radius ``MASK_RADIUS1``), the encoder sees the corrupted image, the decoder
predicts the image, and the loss is the frequency distance to the original on the removed frequencies.
"""
from __future__ import annotations

import logging
import re

import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from .vision_transformer import VisionTransformer

log = logging.getLogger(__name__)

# MFM checkpoint tensors SPAI does not use: the final LayerNorm (SPAI takes the blocks' tokens before it), the
# mean-pooling variant's fc_norm, and the pre-training decoder.
MFM_DROPPED = (r"encoder\.norm\.(weight|bias)", r"encoder\.fc_norm\.(weight|bias)", r"decoder\..+")
_DROPPED_RE = re.compile("|".join(f"(?:{p})" for p in MFM_DROPPED))


def is_mfm_state_dict(state_dict: dict) -> bool:
    """Whether a checkpoint's ``model`` entry is in the MFM pre-training layout (``encoder.*`` / ``decoder.*``)."""
    keys = list(state_dict)
    return bool(keys) and any(k.startswith("encoder.") for k in keys) and \
        all(k.startswith(("encoder.", "decoder.")) for k in keys)


def mfm_to_vit_state_dict(state_dict: dict) -> tuple[dict, list[str]]:
    """Key map from the MFM layout to SPAI's ViT: ``encoder.<k>`` -> ``<k>``; decoder / final-norm tensors dropped.

    Returns (ViT state dict, dropped keys). A key outside the ``encoder.``/``decoder.`` layout raises.
    """
    out, dropped = {}, []
    for k, v in state_dict.items():
        if _DROPPED_RE.fullmatch(k):
            dropped.append(k)
        elif k.startswith("encoder."):
            out[k.removeprefix("encoder.")] = v
        else:
            raise ValueError(f"{k}: not an MFM checkpoint key (expected encoder.* or decoder.*)")
    return out, dropped


def frequency_mask(size: int, radius1: float, radius2: float) -> torch.Tensor:
    """MFM's low-pass mask [size, size] (float): 0 where radius1 <= distance from (size//2, size//2) < radius2."""
    c = size // 2
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    d2 = (xx - c) ** 2 + (yy - c) ** 2
    return (~((d2 >= radius1 ** 2) & (d2 < radius2 ** 2))).float()


def frequency_distance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|F(pred) - F(target)| per frequency (orthonormal 2-D FFT, centred): [B, C, H, W] -> [B, C, H, W].

    MFM's ``FrequencyLoss`` with its defaults (loss_gamma 1, no spectrum weight matrix, patch factor 1).
    """
    def spectrum(x):
        return torch.fft.fftshift(torch.fft.fft2(x.float(), norm="ortho"), dim=(-2, -1))

    diff = spectrum(pred) - spectrum(target)
    return torch.sqrt(diff.real ** 2 + diff.imag ** 2 + 1e-12)


class MFMEncoder(VisionTransformer):
    """SPAI's ViT plus MFM's final LayerNorm: x [B, 3, S, S] -> patch tokens [B, L, D] of the last block, normed."""

    def __init__(self, **vit_kwargs):
        super().__init__(**vit_kwargs, intermediate_layers=[vit_kwargs["depth"] - 1])
        self.norm = nn.LayerNorm(self.patch_embed.proj.out_channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x)[:, 0])


class MFMPretrainModel(nn.Module):
    """MFM pre-training of SPAI's ViT. forward(x [B, 3, S, S] in [0, 1], low_pass [B] bool) -> scalar loss."""

    def __init__(self, cfg):
        super().__init__()
        vit, data = cfg.MODEL.VIT, cfg.DATA
        self.patch_size, self.recover = vit.PATCH_SIZE, cfg.MODEL.RECOVER_TARGET_TYPE
        self.encoder = MFMEncoder(img_size=data.IMG_SIZE, patch_size=vit.PATCH_SIZE, embed_dim=vit.EMBED_DIM,
                                  depth=vit.DEPTH, num_heads=vit.NUM_HEADS, mlp_ratio=vit.MLP_RATIO,
                                  qkv_bias=vit.QKV_BIAS, drop_path_rate=cfg.MODEL.DROP_PATH_RATE,
                                  init_values=vit.INIT_VALUES, use_abs_pos_emb=vit.USE_APE)
        self.decoder = nn.Sequential(nn.Conv2d(vit.EMBED_DIM, vit.PATCH_SIZE ** 2 * 3, kernel_size=1),
                                     nn.PixelShuffle(vit.PATCH_SIZE))
        self.register_buffer("mask", frequency_mask(data.IMG_SIZE, data.MASK_RADIUS1, data.MASK_RADIUS2),
                             persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1), persistent=False)

    def corrupt(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Keep the frequencies where ``keep`` [B, 1, S, S] is 1 (real part of the inverse FFT, clamped to [0, 1])."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.fftshift(torch.fft.fft2(x.float()), dim=(-2, -1)) * keep
            return torch.fft.ifft2(torch.fft.ifftshift(spec, dim=(-2, -1))).real.clamp(0, 1)

    def reconstruct(self, x_corrupted: torch.Tensor) -> torch.Tensor:
        """Normalised corrupted image [B, 3, S, S] -> predicted normalised image [B, 3, S, S]."""
        tokens = self.encoder(x_corrupted)  # [B, L, D]
        B, L, D = tokens.shape
        side = int(L ** 0.5)
        return self.decoder(tokens.transpose(1, 2).reshape(B, D, side, side))

    def forward(self, x: torch.Tensor, low_pass: torch.Tensor) -> torch.Tensor:
        keep = torch.where(low_pass[:, None, None, None], self.mask, 1 - self.mask)  # [B, 1, S, S]
        corrupted = (self.corrupt(x, keep) - self.mean) / self.std
        pred = self.reconstruct(corrupted)
        dist = frequency_distance(pred, (x - self.mean) / self.std)  # [B, 3, S, S]
        if self.recover == "normal":
            return dist.mean()
        removed = 1 - keep
        return (dist * removed).sum() / (removed.sum() * dist.shape[1]).clamp_min(1)


def build(cfg) -> MFMPretrainModel:
    if cfg.MODEL_WEIGHTS != "mfm":
        raise ValueError(f"MFM pre-training builds SPAI's MFM ViT; MODEL_WEIGHTS={cfg.MODEL_WEIGHTS!r} has none")
    return MFMPretrainModel(cfg)
