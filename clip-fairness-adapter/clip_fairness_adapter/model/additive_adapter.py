"""Residual MLP adapter: feature' = feature + adapter(feature)."""
from __future__ import annotations

import torch
from torch import nn


class AdditiveAdapter(nn.Module):
    """MLP dim -> hidden -> hidden -> dim (ReLU, dropout); returns the *additive* term [..., dim].

    The hidden layers use Kaiming-normal init, the last layer N(0, 0.01) with zero bias, so the adapted feature
    starts next to the input feature. Keys ``adapter.{0,3,6}.{weight,bias}`` match the upstream checkpoints.
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.1):
        super().__init__()
        self.adapter = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
        )
        for layer in (self.adapter[0], self.adapter[3]):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.adapter[6].weight, std=0.01)
        nn.init.zeros_(self.adapter[6].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(x)
