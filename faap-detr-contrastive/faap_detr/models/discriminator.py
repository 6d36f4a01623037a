"""Gender discriminator of the original FAAP objective, on query-averaged decoder features."""
from torch import nn


class GenderDiscriminator(nn.Module):
    """LayerNorm -> Linear -> ReLU -> Linear -> ReLU -> Linear(2). Input [B,Q,C] (mean over queries) or [B,C]."""

    def __init__(self, input_dim=256, hidden_dim=256):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(input_dim), nn.Linear(input_dim, hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 2))

    def forward(self, h):
        return self.net(h.mean(1) if h.dim() == 3 else h)
