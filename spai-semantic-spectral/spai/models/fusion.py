"""Semantic-spectral fusion modules. Each adds a residual through a zero-initialised output layer, so a
model with them enabled computes exactly base SPAI until training moves those layers."""
from __future__ import annotations

import torch
from torch import nn


def zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """Linear layer with zero weight and bias (the output layer of every fusion residual)."""
    layer = nn.Linear(d_in, d_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class EarlyFusionGate(nn.Module):
    """Inject the semantic vector into ViT tokens after a block.

    tokens [B, T, D], sem [B, S] -> tokens + out(sigmoid(gate([LN(tokens), s])) * s), s = proj(LN(sem)).
    """

    def __init__(self, dim: int, sem_dim: int):
        super().__init__()
        self.sem_norm, self.sem_proj = nn.LayerNorm(sem_dim), nn.Linear(sem_dim, dim)
        self.token_norm, self.gate = nn.LayerNorm(dim), nn.Linear(2 * dim, dim)
        self.out = zero_linear(dim, dim)

    def forward(self, tokens: torch.Tensor, sem: torch.Tensor) -> torch.Tensor:
        s = self.sem_proj(self.sem_norm(sem))[:, None].expand_as(tokens)
        g = torch.sigmoid(self.gate(torch.cat([self.token_norm(tokens), s], dim=-1)))
        return tokens + self.out(g * s)


class FrequencyAwareCrossAttention(nn.Module):
    """Spectral tokens attend to the CLIP tokens, with a separate path per component (orig, low, high).

    feats[c]: [P, N, L, D] projected tokens; sem_tokens [P, T, W].
    Returns (updated feats, summaries {c: [P, D]} = attention output averaged over layers and tokens).
    """

    COMPONENTS = ("orig", "low", "high")

    def __init__(self, dim: int, sem_width: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MODEL.FRE.SEMANTIC_NUM_HEADS={num_heads} must divide PROJECTION_DIM={dim}")
        self.norms = nn.ModuleDict({c: nn.LayerNorm(dim) for c in self.COMPONENTS})
        self.attns = nn.ModuleDict({c: nn.MultiheadAttention(dim, num_heads, dropout=dropout, kdim=sem_width,
                                                             vdim=sem_width, batch_first=True)
                                    for c in self.COMPONENTS})
        self.outs = nn.ModuleDict({c: zero_linear(dim, dim) for c in self.COMPONENTS})

    def forward(self, feats: dict, sem_tokens: torch.Tensor) -> tuple[dict, dict]:
        updated, summaries = {}, {}
        for c in self.COMPONENTS:
            P, N, L, D = feats[c].shape
            q = self.norms[c](feats[c]).reshape(P, N * L, D)
            a, _ = self.attns[c](q, sem_tokens, sem_tokens, need_weights=False)  # [P, N*L, D]
            summaries[c] = a.mean(dim=1)
            updated[c] = feats[c] + self.outs[c](a).reshape(P, N, L, D)
        return updated, summaries


class HierarchicalFusion(nn.Module):
    """Level 1 fuses the low and high components, level 2 adds that to the original-image context vector.

    ctx [P, D], low / high [P, N, L, D] -> ctx + out([LN(ctx), GELU(lin([LN(mean low), LN(mean high)]))]).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.low_norm, self.high_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.level1 = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())
        self.ctx_norm = nn.LayerNorm(dim)
        self.out = zero_linear(2 * dim, dim)

    def forward(self, ctx: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        lh = self.level1(torch.cat([self.low_norm(low.mean(dim=(1, 2))),
                                    self.high_norm(high.mean(dim=(1, 2)))], dim=-1))
        return ctx + self.out(torch.cat([self.ctx_norm(ctx), lh], dim=-1))


class AdaptiveGating(nn.Module):
    """Input-dependent mix of semantic and spectral features on the per-patch vector.

    f [P, C], sem [P, S] -> f + out(g * s + (1 - g) * LN(f)), g = sigmoid(gate([LN(f), s])), s = proj(LN(sem)).
    """

    def __init__(self, dim: int, sem_dim: int):
        super().__init__()
        self.sem_norm, self.sem_proj = nn.LayerNorm(sem_dim), nn.Linear(sem_dim, dim)
        self.feat_norm, self.gate = nn.LayerNorm(dim), nn.Linear(2 * dim, dim)
        self.out = zero_linear(dim, dim)

    def forward(self, f: torch.Tensor, sem: torch.Tensor) -> torch.Tensor:
        s, fn = self.sem_proj(self.sem_norm(sem)), self.feat_norm(f)
        g = torch.sigmoid(self.gate(torch.cat([fn, s], dim=-1)))
        return f + self.out(g * s + (1 - g) * fn)

