"""The generator's objective with its weights: score-contrastive v2 (the design) or the original FAAP adversarial one.

Both see the frozen DETR's outputs on the perturbed batch and return (total loss, logged scalars):

- contrastive: ``lambda_c * w(epoch) * L_con + lambda_w * L_wass + beta(epoch) * L_det``
- adversarial: ``lambda_fair * L_fair + beta(epoch) * L_det``, after a discriminator step on detached features.
"""
import torch
from torch import nn

from ..schedules import contrastive_warmup_weight, scheduled_beta
from .adversarial import discriminator_loss, fairness_loss
from .contrastive import AdaptiveScoreContrastiveLoss, BidirectionalScoreContrastiveLoss
from .wasserstein import wasserstein_1d_asymmetric


def image_level_scores(outputs, targets, indices):
    """Per image: mean softmax probability (all K+1 classes) of the GT class over its Hungarian-matched queries.

    -> [B]; an image without GT boxes gets a constant 0."""
    probs = outputs["pred_logits"].float().softmax(-1)
    scores = []
    for b, (src, tgt) in enumerate(indices):
        if len(src) == 0:
            scores.append(probs.new_zeros(()))
        else:
            labels = targets[b]["labels"][tgt].to(probs.device)
            scores.append(probs[b, src.to(probs.device), labels].mean())
    return torch.stack(scores)


def _masked_mean(x, m):
    return x[m].mean().item() if m.any() else None


class FaapObjective(nn.Module):
    """Shared part: the DETR detection loss L_det (SetCriterion, aux layers included) weighted by beta(epoch), and the
    image-level detection scores every variant logs."""

    def __init__(self, criterion, beta_start, beta_end, epochs):
        super().__init__()
        self.criterion = criterion
        self.beta_start, self.beta_end, self.epochs = beta_start, beta_end, epochs

    def weights(self, epoch):
        """The epoch's loss weights (logged each epoch)."""
        return {"beta": scheduled_beta(epoch, self.epochs, self.beta_start, self.beta_end)}

    def detection(self, outputs, targets, gender, num_boxes):
        """-> (L_det, image scores [B], logs)."""
        losses, indices = self.criterion(outputs, targets, num_boxes=num_boxes)
        loss_det = self.criterion.weighted_total(losses)
        scores = image_level_scores(outputs, targets, indices)
        logs = {"loss_det": loss_det.item(), "score_f": _masked_mean(scores, gender == 1),
                "score_m": _masked_mean(scores, gender == 0)}
        return loss_det, scores, logs


class ScoreContrastiveObjective(FaapObjective):
    """Design v2: score-ranked InfoNCE on projected decoder features + one-sided Wasserstein on female scores."""

    def __init__(self, criterion, contrastive, lambda_contrastive, lambda_wass, warmup_epochs, beta_start, beta_end,
                 epochs):
        super().__init__(criterion, beta_start, beta_end, epochs)
        self.contrastive = contrastive
        self.lambda_contrastive, self.lambda_wass, self.warmup_epochs = lambda_contrastive, lambda_wass, warmup_epochs

    def weights(self, epoch):
        return {**super().weights(epoch),
                "contrastive_weight": contrastive_warmup_weight(epoch, self.warmup_epochs)}

    def forward(self, outputs, targets, gender, epoch, num_boxes, embeddings):
        """embeddings [B,D]: the projection head's output on the last decoder layer. -> (total, logs)."""
        w = self.weights(epoch)
        loss_det, scores, logs = self.detection(outputs, targets, gender, num_boxes)
        loss_con, info = self.contrastive(embeddings.float(), scores.detach())
        loss_wass = wasserstein_1d_asymmetric(scores[gender == 1], scores[gender == 0])
        total = (self.lambda_contrastive * w["contrastive_weight"] * loss_con + self.lambda_wass * loss_wass
                 + w["beta"] * loss_det)
        logs.update(loss_contrastive=loss_con.item(), loss_wasserstein=loss_wass.item(),
                    n_positive=info["n_positive"], n_anchor=info["n_anchor"], score_gap=info["score_gap"])
        return total, logs


class AdversarialObjective(FaapObjective):
    """Original FAAP: the generator fools a gender discriminator on query-averaged decoder features."""

    def __init__(self, criterion, lambda_fair, entropy_alpha, beta_start, beta_end, epochs):
        super().__init__(criterion, beta_start, beta_end, epochs)
        self.lambda_fair, self.entropy_alpha = lambda_fair, entropy_alpha

    @staticmethod
    def discriminator_loss(disc_logits, gender):
        return discriminator_loss(disc_logits, gender)

    def forward(self, outputs, targets, gender, epoch, num_boxes, disc_logits):
        """disc_logits [B,2]: the discriminator on the (non-detached) last decoder layer. -> (total, logs)."""
        loss_det, _, logs = self.detection(outputs, targets, gender, num_boxes)
        loss_fair = fairness_loss(disc_logits, gender, self.entropy_alpha)
        total = self.lambda_fair * loss_fair + self.weights(epoch)["beta"] * loss_det
        logs.update(loss_fair=loss_fair.item())
        return total, logs


def build(cfg, criterion):
    """The objective of `cfg.method` with the weights of `cfg.loss`, around DETR's SetCriterion `criterion`."""
    lc = cfg.loss
    if cfg.method == "contrastive":
        common = dict(temperature=lc.temperature, top_k_percent=lc.top_k_percent,
                      bottom_k_percent=lc.bottom_k_percent, min_samples=lc.min_samples, rounding=lc.count_rounding)
        contrastive = (BidirectionalScoreContrastiveLoss(anchor_weight=lc.anchor_weight,
                                                         positive_weight=lc.positive_weight, **common)
                       if lc.bidirectional else AdaptiveScoreContrastiveLoss(**common))
        return ScoreContrastiveObjective(criterion, contrastive, lc.lambda_contrastive, lc.lambda_wass,
                                         lc.contrastive_warmup_epochs, lc.beta_start, lc.beta_end, cfg.train.epochs)
    if cfg.method == "adversarial":
        return AdversarialObjective(criterion, lc.lambda_fair, lc.entropy_alpha, lc.beta_start, lc.beta_end,
                                    cfg.train.epochs)
    raise ValueError(f"config key 'method' must be 'contrastive' or 'adversarial', got {cfg.method!r}")
