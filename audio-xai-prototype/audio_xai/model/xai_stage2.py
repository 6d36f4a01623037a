"""Stage 2 XAI module: importance network h(t) -> w(t) and class prototypes (trained on a frozen detector)."""
import math

import torch
import torch.nn.functional as F
from common_utils.train import all_reduce_mean
from torch import nn

from ..losses import OBJECTIVES, SIMILARITIES, frame_similarity, stage2_loss

MODES = ("ema", "fixed", "learnable")
SPOOF_PROTOTYPES = ("mean", "importance_weighted")


class ImportanceNetwork(nn.Module):
    """Per-frame MLP: h [B, T, D] -> w [B, T] in [0, 1] (sigmoid)."""

    def __init__(self, in_dim: int, hidden_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(h)).squeeze(-1)


def class_means(h, y, mask, num_classes: int = 2, normalize: bool = True, spoof_weight=None):
    """Mean of the valid frames of each class (L2-normalised first if ``normalize``) -> (means [C, D], counts [C]).

    ``spoof_weight`` [B, T] in [0, 1] (optional, two classes): a spoof utterance's frame counts for the spoof class
    (0) with its weight and for the bona fide class (1) with the rest, 1 - weight; bona fide utterances count wholly
    for class 1. Counts are then sums of weights.
    """
    assign = F.one_hot(y, num_classes).to(h.dtype)[:, None].expand(-1, h.shape[1], -1)   # [B, T, C]
    if spoof_weight is not None:
        spoof = (y == 0)[:, None].to(h.dtype) * spoof_weight.to(h.dtype)                  # [B, T]
        assign = torch.stack([spoof, 1 - spoof], dim=-1)
    assign = assign * mask[..., None].to(h.dtype)
    hn = F.normalize(h, dim=-1) if normalize else h
    sums = torch.einsum("btc,btd->cd", assign, hn)
    counts = assign.sum((0, 1))                                                          # [C]
    return sums / counts.clamp_min(1e-12)[:, None], counts


class PrototypeManager(nn.Module):
    """Class prototypes p_c [C, D] (index = label: 0 spoof, 1 bona fide).

    ``ema``: p <- m_n p + (1 - m_n) mean_batch with m_n = min(momentum, n / (n + 1)), n = the batches of that class
    already averaged (``updates``), no gradient. The first 1 / (1 - momentum) batches are thus averaged with equal
    weights (the running class mean; the first batch initialises it), then the EMA forgets at ``momentum``. Seeding
    a plain EMA with the first batch instead would leave that one batch's mean a weight momentum^n (0.70 after 35
    steps at 0.99), so the prototypes, and with them the contrastive term, would drift for ~1 / (1 - momentum) steps.
    ``fixed``: the global mean over the training set, set once; ``learnable``: an nn.Parameter.
    Means are over L2-normalised frames if ``normalize`` (cosine similarity), else over the raw frames (dot).
    """

    def __init__(self, dim: int, mode: str = "ema", momentum: float = 0.99, num_classes: int = 2,
                 normalize: bool = True):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown prototype_mode {mode!r}; expected one of {MODES}")
        self.mode, self.momentum, self.num_classes, self.normalize = mode, momentum, num_classes, normalize
        if mode == "learnable":
            self.prototypes = nn.Parameter(F.normalize(torch.randn(num_classes, dim), dim=-1))
        else:
            self.register_buffer("prototypes", torch.zeros(num_classes, dim))
        self.register_buffer("updates", torch.zeros(num_classes, dtype=torch.long))  # batches averaged per class

    @property
    def initialized(self) -> torch.Tensor:
        """[C] bool: the class has a prototype (ema: at least one update; fixed: set)."""
        return self.updates > 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A checkpoint written before ``updates`` holds a bool ``initialized`` [C] instead: an initialised class
        continues as that code did (the plain EMA at ``momentum``, i.e. past the running-mean start), others start."""
        old = state_dict.pop(prefix + "initialized", None)
        if old is not None and prefix + "updates" not in state_dict:
            past_start = math.ceil(self.momentum / (1 - self.momentum)) if self.momentum < 1 else 1
            state_dict[prefix + "updates"] = old.to(torch.long) * past_start
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def update(self, h, y, mask, spoof_weight=None) -> None:
        """EMA step from a batch of frames (ema mode only); ``spoof_weight`` [B, T] weights spoof utterances' frames."""
        if self.mode != "ema":
            raise RuntimeError(f"update() is for ema prototypes, this manager is {self.mode!r}")
        means, counts = class_means(h.float(), y, mask, self.num_classes, self.normalize, spoof_weight)
        sums, counts = all_reduce_mean(means * counts[:, None]), all_reduce_mean(counts)  # same on every rank
        means = sums / counts.clamp_min(1e-12)[:, None]
        for c in range(self.num_classes):
            if counts[c] > 1e-6:
                n = int(self.updates[c])
                m = min(self.momentum, n / (n + 1))
                self.prototypes[c] = m * self.prototypes[c] + (1 - m) * means[c]
                self.updates[c] += 1

    @torch.no_grad()
    def set_global_mean(self, means: torch.Tensor) -> None:
        """Fixed mode: store the training-set class means [C, D]."""
        if self.mode != "fixed":
            raise RuntimeError(f"set_global_mean() is for fixed prototypes, this manager is {self.mode!r}")
        self.prototypes.copy_(means)
        self.updates.fill_(1)

    def forward(self) -> torch.Tensor:
        return self.prototypes


class XAIStage2(nn.Module):
    """Importance network + prototypes; ``loss`` gives the Stage 2 objective (the detector score is not used)."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, prototype_mode: str = "ema", ema_momentum: float = 0.99,
                 temperature: float = 0.07, lambda_bonafide_reg: float = 0.1, lambda_temporal_smooth: float = 0.1,
                 lambda_sparsity: float = 0.01, objective: str = "bonafide_null", similarity: str = "cosine",
                 spoof_prototype: str = "mean"):
        super().__init__()
        if spoof_prototype not in SPOOF_PROTOTYPES:
            raise ValueError(f"unknown spoof_prototype {spoof_prototype!r}; expected one of {SPOOF_PROTOTYPES}")
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown importance_objective {objective!r}; expected one of {OBJECTIVES}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"unknown similarity {similarity!r}; expected one of {SIMILARITIES}")
        self.importance = ImportanceNetwork(in_dim, hidden_dim)
        self.prototypes = PrototypeManager(in_dim, prototype_mode, ema_momentum, normalize=similarity == "cosine")
        self.temperature, self.objective, self.similarity_kind = temperature, objective, similarity
        self.spoof_prototype = spoof_prototype
        self.lambdas = {"bonafide_reg": lambda_bonafide_reg, "temporal_smooth": lambda_temporal_smooth,
                        "sparsity": lambda_sparsity}

    def forward(self, h: torch.Tensor, y=None, mask=None):
        """h [B, T, D] -> w [B, T]; with labels y [B] and mask [B, T] -> the loss terms (see ``loss``)."""
        return self.importance(h) if y is None else self.loss(h, y, mask)

    @torch.no_grad()
    def update_prototypes(self, h, y, mask) -> None:
        """EMA step of the prototypes from a batch (before the batch's loss). ``importance_weighted``: a spoof
        utterance's frame counts for the spoof prototype with its current importance w(t) and for the bona fide one
        with 1 - w(t), as the ``bonafide_null`` objective explains it; ``mean``: the class means (the design's)."""
        weight = self.importance(h) if self.spoof_prototype == "importance_weighted" else None
        self.prototypes.update(h, y, mask, weight)

    def similarity(self, h: torch.Tensor) -> torch.Tensor:
        """Similarity (cosine or dot, ``model.similarity``) of each frame to each prototype, [B, T, C]."""
        return frame_similarity(h, self.prototypes(), self.similarity_kind)

    def loss(self, h, y, mask) -> dict:
        """Loss terms (see ``losses.stage2_loss``) plus ``w``; prototypes must be initialised first."""
        if not bool(self.prototypes.initialized.all()) and self.prototypes.mode != "learnable":
            raise RuntimeError("prototypes are not initialised (ema: call update(); fixed: set_global_mean())")
        w = self.importance(h)
        terms = stage2_loss(h, w, self.prototypes(), y, mask, self.temperature, self.lambdas, self.objective,
                            self.similarity_kind)
        terms["w"] = w
        return terms


def build_xai(cfg, in_dim: int) -> XAIStage2:
    """From the ``model`` config section."""
    return XAIStage2(in_dim, cfg.importance_hidden_dim, cfg.prototype_mode, cfg.ema_momentum, cfg.temperature,
                     cfg.lambda_bonafide_reg, cfg.lambda_temporal_smooth, cfg.lambda_sparsity, cfg.importance_objective,
                     cfg.similarity, cfg.spoof_prototype)
