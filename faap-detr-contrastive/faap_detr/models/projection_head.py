"""SimCLR-style projection of DETR decoder features into the contrastive space."""
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """Linear(256->512) -> BN -> ReLU -> Linear(512->128) -> L2 normalise.

    Input [B,Q,256] is mean-pooled over queries first (or [B,256] directly); output [B,128], unit rows."""

    def __init__(self, input_dim=256, hidden_dim=512, output_dim=128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, output_dim))

    def forward(self, x):
        if x.dim() == 3:
            x = x.mean(1)
        return F.normalize(self.net(x), dim=-1)
