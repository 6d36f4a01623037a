"""DETR SetCriterion: labels (CE with down-weighted no-object), boxes (L1 + GIoU), cardinality (logging)."""
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou


def _flat_index(indices):
    batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    return batch, torch.cat([src for src, _ in indices])


class SetCriterion(nn.Module):
    def __init__(self, num_classes, matcher, weight_dict, eos_coef=0.1, aux_loss=True):
        """weight_dict: loss_ce / loss_bbox / loss_giou weights; aux layers reuse them (suffix `_i`)."""
        super().__init__()
        self.aux_loss = aux_loss
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def _layer_losses(self, out, targets, indices, num_boxes, with_class_error):
        logits = out["pred_logits"]
        idx = _flat_index(indices)
        tgt_labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[idx] = tgt_labels
        losses = {"loss_ce": F.cross_entropy(logits.transpose(1, 2).float(), classes, self.empty_weight)}
        if with_class_error:
            if tgt_labels.numel():
                acc = (logits[idx].argmax(-1) == tgt_labels).float().mean() * 100
            else:
                acc = logits.new_tensor(100.0)
            losses["class_error"] = 100 - acc.detach()
        n_true = torch.as_tensor([len(t["labels"]) for t in targets], device=logits.device, dtype=torch.float32)
        n_pred = (logits.argmax(-1) != self.num_classes).sum(1).float()
        losses["cardinality_error"] = F.l1_loss(n_pred, n_true).detach()
        src_boxes = out["pred_boxes"][idx].float()
        tgt_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src_boxes)
        losses["loss_bbox"] = F.l1_loss(src_boxes, tgt_boxes, reduction="none").sum() / num_boxes
        giou = torch.diag(generalized_box_iou(box_convert(src_boxes, "cxcywh", "xyxy"),
                                              box_convert(tgt_boxes, "cxcywh", "xyxy")))
        losses["loss_giou"] = (1 - giou).sum() / num_boxes
        return losses

    def forward(self, outputs, targets, indices=None, num_boxes=None):
        """Returns (raw loss dict, final-layer matching). `num_boxes` defaults to the local box count (>= 1);
        the trainer passes the all-reduced count under DDP."""
        if indices is None:
            indices = self.matcher(outputs, targets)
        if num_boxes is None:
            num_boxes = float(sum(len(t["labels"]) for t in targets))
        num_boxes = max(num_boxes, 1.0)
        losses = self._layer_losses(outputs, targets, indices, num_boxes, with_class_error=True)
        for i, aux in enumerate(outputs.get("aux_outputs", []) if self.aux_loss else []):
            aux_losses = self._layer_losses(aux, targets, self.matcher(aux, targets), num_boxes, False)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses, indices

    def weighted_total(self, losses):
        """sum(loss[k] * w[k]) over every weighted key, aux copies included (upstream engine.py)."""
        total = 0.0
        for k, v in losses.items():
            base = k.rsplit("_", 1)[0] if k.rsplit("_", 1)[-1].isdigit() else k
            if base in self.weight_dict:
                total = total + v * self.weight_dict[base]
        return total
