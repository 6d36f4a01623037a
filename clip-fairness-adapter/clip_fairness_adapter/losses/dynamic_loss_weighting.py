"""Weighting of the classification and fairness losses: Kendall uncertainty weighting, or fixed weights."""
from __future__ import annotations

import torch
from torch import nn

KENDALL_FORMS = ("design", "upstream")


class DynamicFairnessLossWeighting(nn.Module):
    """Uncertainty weighting with learned log-variances s_cls, s_fair (Kendall et al. 2018).

    total = exp(-s_cls)*L_cls + c*s_cls + exp(-s_fair)*L_fair + c*s_fair with c = 1 (``form='design'``, the design
    document as written) or c = 0.5 (``form='upstream'``, what the design's code computes).
    lambda_fair = exp(-s_fair) / (exp(-s_cls) + exp(-s_fair) + 1e-8) is returned for monitoring; info holds the
    precisions and the two weighted terms (precision*L + c*s each).
    forward(loss_cls [], loss_fair []) -> (total [], lambda_fair [], info dict)
    """

    def __init__(self, init_log_var_cls: float = 0.0, init_log_var_fair: float = 0.0, form: str = "design"):
        super().__init__()
        if form not in KENDALL_FORMS:
            raise ValueError(f"loss_weighting.kendall_form must be one of {KENDALL_FORMS}, got {form!r}")
        self.reg = 1.0 if form == "design" else 0.5
        self.log_var_cls = nn.Parameter(torch.tensor(float(init_log_var_cls)))
        self.log_var_fair = nn.Parameter(torch.tensor(float(init_log_var_fair)))

    def forward(self, loss_cls: torch.Tensor, loss_fair: torch.Tensor):
        p_cls, p_fair = torch.exp(-self.log_var_cls), torch.exp(-self.log_var_fair)
        w_cls = p_cls * loss_cls + self.reg * self.log_var_cls
        w_fair = p_fair * loss_fair + self.reg * self.log_var_fair
        total = w_cls + w_fair
        lambda_fair = p_fair / (p_cls + p_fair + 1e-8)
        info = {"precision_cls": p_cls, "precision_fair": p_fair, "weighted_cls": w_cls, "weighted_fair": w_fair}
        return total, lambda_fair.detach(), info


class FixedLossWeighting(nn.Module):
    """total = lambda_cls*L_cls + lambda_fair*L_fair; reports lambda_fair / (lambda_cls + lambda_fair)."""

    def __init__(self, lambda_cls: float = 1.0, lambda_fair: float = 0.05):
        super().__init__()
        self.lambda_cls, self.lambda_fair = float(lambda_cls), float(lambda_fair)

    def forward(self, loss_cls: torch.Tensor, loss_fair: torch.Tensor):
        total = self.lambda_cls * loss_cls + self.lambda_fair * loss_fair
        rel = torch.tensor(self.lambda_fair / (self.lambda_cls + self.lambda_fair + 1e-12))
        return total, rel, {}


def build_loss_weighting(cfg) -> nn.Module:
    """cfg: the ``loss_weighting`` config section (type dynamic|fixed)."""
    if cfg.type == "dynamic":
        return DynamicFairnessLossWeighting(cfg.init_log_var_cls, cfg.init_log_var_fair, cfg.kendall_form)
    if cfg.type == "fixed":
        return FixedLossWeighting(cfg.lambda_cls, cfg.lambda_fair)
    raise ValueError(f"loss_weighting.type must be 'dynamic' or 'fixed', got {cfg.type!r}")
