"""ResNet backbone with frozen BatchNorm (random init; real weights come from the DETR checkpoint)."""
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from .position_encoding import PositionEmbeddingSine


class Backbone(nn.Module):
    """ResNet trunk up to layer4 (stride 32). State-dict keys `body.*` as in upstream DETR."""

    def __init__(self, name="resnet50", dilation=False):
        super().__init__()
        if name not in ("resnet18", "resnet34", "resnet50", "resnet101"):
            raise ValueError(f"unsupported backbone {name!r}")
        # weights=None: no ImageNet download; the DETR checkpoint overwrites every tensor.
        resnet = getattr(torchvision.models, name)(
            weights=None, replace_stride_with_dilation=[False, False, dilation], norm_layer=FrozenBatchNorm2d
        )
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer4": "0"})
        self.num_channels = 512 if name in ("resnet18", "resnet34") else 2048

    def forward(self, images, mask):
        """images [B,3,H,W], mask [B,H,W] -> features [B,C,H/32,W/32], mask [B,H/32,W/32]."""
        feats = self.body(images)["0"]
        mask = F.interpolate(mask[None].float(), size=feats.shape[-2:])[0].to(torch.bool)
        return feats, mask


class Joiner(nn.Sequential):
    """(backbone, position embedding); keys `0.body.*` give upstream's `backbone.0.body.*`."""

    def forward(self, images, mask):
        feats, mask = self[0](images, mask)
        return feats, mask, self[1](mask).to(feats.dtype)


def build_backbone(name, hidden_dim, dilation=False):
    return Joiner(Backbone(name, dilation), PositionEmbeddingSine(hidden_dim // 2))
