"""DETR detector, the frozen wrapper used by FAAP, official-checkpoint loading, post-processing and `build`."""
import torch
import torch.nn.functional as F
from common_utils.train import load_checkpoint, load_state_dict_strict
from torch import nn
from torchvision.ops import box_convert

from ..losses.criterion import SetCriterion
from .backbone import build_backbone
from .matcher import HungarianMatcher
from .transformer import Transformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MLP(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class DETR(nn.Module):
    """Upstream DETR; `forward` also returns every decoder layer's hidden state."""

    def __init__(self, backbone, transformer, num_classes, num_queries):
        super().__init__()
        hidden = transformer.d_model
        # registration order = upstream state-dict order
        self.transformer = transformer
        self.class_embed = nn.Linear(hidden, num_classes + 1)
        self.bbox_embed = MLP(hidden, hidden, 4, 3)
        self.query_embed = nn.Embedding(num_queries, hidden)
        self.input_proj = nn.Conv2d(backbone[0].num_channels, hidden, kernel_size=1)
        self.backbone = backbone

    def forward(self, images, mask):
        """images [B,3,H,W] ImageNet-normalised, zero on padding; mask [B,H,W] True on padding.

        Returns pred_logits [B,Q,K+1], pred_boxes [B,Q,4] (cxcywh in [0,1] of the unpadded image),
        aux_outputs (one dict per earlier decoder layer) and hs [L,B,Q,C]."""
        feats, fmask, pos = self.backbone(images, mask)
        return self.forward_features(feats, fmask, pos)

    def forward_features(self, feats, fmask, pos=None):
        """From backbone features [B,C,h,w] and their mask [B,h,w] (pos computed from the mask if None)."""
        if pos is None:
            pos = self.backbone[1](fmask).to(feats.dtype)
        hs = self.transformer(self.input_proj(feats), fmask, self.query_embed.weight, pos)[0]
        logits = self.class_embed(hs)
        boxes = self.bbox_embed(hs).sigmoid()
        return {
            "pred_logits": logits[-1],
            "pred_boxes": boxes[-1],
            "aux_outputs": [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])],
            "hs": hs,
        }


def map_official_keys(state_dict):
    """Official `detr-r50-*.pth` keys -> ours. Our module tree uses upstream names, so the map is the identity
    except for BatchNorm `num_batches_tracked` counters (FrozenBatchNorm2d has none; they carry no weights)."""
    return {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


def load_detr_checkpoint(model, path):
    """Load an official DETR release file (`{'model': state_dict}`) strictly through the key map."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: expected a dict with key 'model' (official DETR format)")
    state = map_official_keys(ckpt["model"])
    load_state_dict_strict(model, state, str(path))
    return model


class FrozenDETR(nn.Module):
    """DETR in eval mode with no parameter gradients; gradients still flow to the input image."""

    def __init__(self, detr):
        super().__init__()
        self.detr = detr
        self.detr.requires_grad_(False)
        self.eval()

    def train(self, mode=True):  # stays in eval mode (dropout off) whatever the caller asks
        return super().train(False)

    def forward(self, images, mask):
        return self.detr(images, mask)


def normalize(images):
    """[B,3,H,W] pixels in [0,1] -> ImageNet-normalised."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


class PostProcess(nn.Module):
    """Upstream PostProcess: softmax without the no-object column, max over classes, all queries, no threshold."""

    @torch.no_grad()
    def forward(self, outputs, orig_sizes):
        """outputs: pred_logits [B,Q,K+1], pred_boxes [B,Q,4]; orig_sizes [B,2] (h, w) ->
        list of dict(scores [Q], labels [Q], boxes [Q,4] absolute xyxy)."""
        prob = outputs["pred_logits"].float().softmax(-1)[..., :-1]
        scores, labels = prob.max(-1)
        boxes = box_convert(outputs["pred_boxes"].float(), "cxcywh", "xyxy")
        h, w = orig_sizes.unbind(1)
        boxes = boxes * torch.stack([w, h, w, h], 1).to(boxes)[:, None, :]
        return [{"scores": s, "labels": lab, "boxes": b} for s, lab, b in zip(scores, labels, boxes)]


def build(cfg):
    """DETR, its SetCriterion and PostProcess from the config's `detr` section (as upstream `models/detr.py`).

    -> (model, criterion, postprocessor). `num_classes` is the max category id + 1 (91 for COCO)."""
    d = cfg.detr
    backbone = build_backbone(d.backbone, d.hidden_dim, d.dilation, d.return_layer)
    transformer = Transformer(d.hidden_dim, d.nheads, d.enc_layers, d.dec_layers, d.dim_feedforward, d.dropout)
    model = DETR(backbone, transformer, d.num_classes, d.num_queries)
    matcher = HungarianMatcher(d.set_cost_class, d.set_cost_bbox, d.set_cost_giou)
    weights = {"loss_ce": d.ce_loss_coef, "loss_bbox": d.bbox_loss_coef, "loss_giou": d.giou_loss_coef}
    criterion = SetCriterion(d.num_classes, matcher, weights, d.eos_coef, d.aux_loss)
    return model, criterion, PostProcess()
