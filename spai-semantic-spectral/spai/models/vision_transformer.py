"""MFM / BEiT-style ViT (separate q and v biases) returning intermediate patch tokens."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """qkv without bias; the bias is cat(q_bias, 0, v_bias) as in BEiT/MFM."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # x: [B, T, D]
        B, T, D = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(B, T, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, T, d]
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, drop_path, init_values):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if init_values:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x):
        if self.gamma_1 is None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, patch_size)

    def forward(self, x):  # [B, 3, H, W] -> [B, H*W/p^2, D]
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Returns the patch tokens (CLS dropped, no final norm) of ``intermediate_layers``: [B, N, L, D]."""

    def __init__(self, img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4,
                 qkv_bias=True, drop_path_rate=0.1, init_values=None, use_abs_pos_emb=True,
                 intermediate_layers=tuple(range(12))):
        super().__init__()
        self.intermediate_layers = list(intermediate_layers)
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        n_tokens = (img_size // patch_size) ** 2 + 1
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, embed_dim)) if use_abs_pos_emb else None
        dpr = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, dpr[i], init_values)
                                    for i in range(depth))
        if self.pos_embed is not None:
            trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, after_block: dict[int, Callable] | None = None,
                grad_from: int = 0) -> torch.Tensor:
        """x: [B, 3, H, W] normalised. ``after_block[i](tokens)`` rewrites the tokens after block i.

        Blocks before ``grad_from`` run without autograd (a frozen backbone ahead of the first fusion gate).
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_from <= 0):
            x = self.patch_embed(x)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            if self.pos_embed is not None:
                x = x + self.pos_embed
        outs = []
        for i, blk in enumerate(self.blocks):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= grad_from):
                x = blk(x)
            if after_block and i in after_block:
                x = after_block[i](x)
            if i in self.intermediate_layers:
                outs.append(x[:, 1:])
        return torch.stack(outs, dim=1)
