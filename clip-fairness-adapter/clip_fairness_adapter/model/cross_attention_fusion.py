"""Cross-attention fusion of the Stage 2 (detection) feature with Stage 1 (fairness) features, plus a dynamic gate."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIX_MODES = ("unit", "design")


class CrossAttentionFusionWithDynamicGate(nn.Module):
    """Stage 2 queries Stage 1; a gate mixes the Stage 1 feature back in (post-norm blocks as in the design).

    forward(stage2_feat [B,D], stage1_feat [B,D], stage1_tokens [B,K,D] | None)
      -> fused [B,D], gate [B,1] (weight of stage1_feat), attn_weights [B,1,K] (averaged over heads), extras dict.

    Keys/values are ``stage1_tokens`` when given (default mode: K Stage-1-adapted tokens, so the attention weights
    depend on the query), else the single global ``stage1_feat`` (the design's form: K = 1, weight always 1, the
    query has no effect). ``gate_bias`` is the initial bias of the gate's last Linear (design: 1.0, which saturates
    the gate near 1; default 0.0). ``mix``: what the gate mixes. ``unit`` (default): the unit-norm Stage 1 feature
    and the post-LayerNorm ``x`` scaled to unit norm, so that the gate is Stage 1's share of the fused direction;
    ``design``: ``x`` as it leaves the LayerNorm (norm ~sqrt(D) = 28 at D = 768), which swamps the unit-norm Stage 1
    feature unless the gate is ~1.
    """

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.1, gate_bias: float = 0.0,
                 mix: str = "unit"):
        super().__init__()
        if mix not in MIX_MODES:
            raise ValueError(f"fusion.mix must be one of {MIX_MODES}, got {mix!r}")
        self.mix = mix
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim * 4, dim), nn.Dropout(dropout))
        self.norm2 = nn.LayerNorm(dim)
        self.gate_net = nn.Sequential(nn.Linear(dim * 2, dim), nn.ReLU(), nn.Linear(dim, 1), nn.Sigmoid())
        nn.init.constant_(self.gate_net[2].bias, gate_bias)

    def forward(self, stage2_feat: torch.Tensor, stage1_feat: torch.Tensor,
                stage1_tokens: torch.Tensor | None = None):
        q = stage2_feat.unsqueeze(1)  # [B,1,D]
        kv = stage1_feat.unsqueeze(1) if stage1_tokens is None else stage1_tokens  # [B,K,D]
        attn_out, attn_weights = self.cross_attn(q, kv, kv)  # [B,1,D], [B,1,K]
        norm1_out = self.norm1(q + attn_out)
        ffn_out = self.ffn(norm1_out)
        norm2_out = self.norm2(norm1_out + ffn_out)
        x = norm2_out.squeeze(1)  # [B,D]
        gate_hidden = self.gate_net[0](torch.cat([x, stage1_feat], dim=-1))  # [B,D]
        gate = self.gate_net[3](self.gate_net[2](self.gate_net[1](gate_hidden)))  # [B,1]
        fused = gate * stage1_feat + (1 - gate) * (F.normalize(x, dim=-1) if self.mix == "unit" else x)
        extras = {"attn_out": attn_out, "norm1_out": norm1_out, "ffn_out": ffn_out, "norm2_out": norm2_out,
                  "gate_hidden_pre_relu": gate_hidden}
        return fused, gate, attn_weights, extras
