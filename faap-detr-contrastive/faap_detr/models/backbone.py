"""ResNet backbone with frozen BatchNorm (random init; real weights come from the DETR checkpoint)."""
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from .position_encoding import PositionEmbeddingSine

# channels of a basic-block / bottleneck trunk cut after the layer, and its stride
LAYERS = {"layer1": (64, 256, 4), "layer2": (128, 512, 8), "layer3": (256, 1024, 16), "layer4": (512, 2048, 32)}


class Backbone(nn.Module):
    """ResNet trunk up to `return_layer` (upstream: layer4, stride 32). State-dict keys `body.*` as in upstream DETR;
    a trunk cut at layer1 / layer2 / layer3 (stride 4 / 8 / 16) simply has no later layers."""

    def __init__(self, name="resnet50", dilation=False, return_layer="layer4"):
        super().__init__()
        if name not in ("resnet18", "resnet34", "resnet50", "resnet101"):
            raise ValueError(f"detr.backbone: unsupported backbone {name!r} (resnet18/34/50/101)")
        if return_layer not in LAYERS:
            raise ValueError(f"detr.return_layer must be one of {sorted(LAYERS)}, got {return_layer!r}")
        basic = name in ("resnet18", "resnet34")
        if dilation and (basic or return_layer != "layer4"):
            raise ValueError("detr.dilation (DC5) needs a ResNet-50/101 trunk returning layer4")
        # weights=None: no ImageNet download; the DETR checkpoint overwrites every tensor.
        resnet = getattr(torchvision.models, name)(
            weights=None, replace_stride_with_dilation=[False, False, dilation], norm_layer=FrozenBatchNorm2d
        )
        self.body = IntermediateLayerGetter(resnet, return_layers={return_layer: "0"})
        self.num_channels = LAYERS[return_layer][0 if basic else 1]

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


def build_backbone(name, hidden_dim, dilation=False, return_layer="layer4"):
    return Joiner(Backbone(name, dilation, return_layer), PositionEmbeddingSine(hidden_dim // 2))
