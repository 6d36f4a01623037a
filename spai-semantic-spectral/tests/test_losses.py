"""Losses on hand-computed cases."""
import math

import pytest
import torch
from spai.models.losses import (
    EnhancedSemanticSpectralLoss,
    FocalLoss,
    FrequencyConsistencyLoss,
    SemanticConsistencyLoss,
)


def test_focal_loss_hand_case():
    logits, y = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    p = 1 / (1 + math.exp(-2.0))
    # y=1, p=0.5: 0.25 * 0.5^2 * ln 2 ; y=0, p=sigmoid(2): 0.75 * p^2 * -ln(1-p)
    expected = (0.25 * 0.25 * math.log(2) + 0.75 * p ** 2 * -math.log(1 - p)) / 2
    assert FocalLoss(0.25, 2.0)(logits, y).item() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_gamma0_alpha_half_is_half_bce():
    logits, y = torch.randn(16), torch.randint(0, 2, (16,)).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    assert FocalLoss(0.5, 0.0)(logits, y).item() == pytest.approx(0.5 * bce.item(), rel=1e-6)


def test_semantic_consistency_hand_cases():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert SemanticConsistencyLoss()(a, 3 * a, a).item() == pytest.approx(0.0, abs=1e-6)
    # orig vs low opposite (gap 2), orig vs high equal (0), low vs high opposite (2): mean 4/3
    assert SemanticConsistencyLoss()(a, -a, a).item() == pytest.approx(4 / 3, rel=1e-6)


def test_frequency_consistency_hand_cases():
    o = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert FrequencyConsistencyLoss()(o, 2 * o, 5 * o).item() == pytest.approx(0.0, abs=1e-6)
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # relations [[1,1],[1,1]] vs identity: mse 0.5
    assert FrequencyConsistencyLoss()(o, same, o).item() == pytest.approx(0.25, rel=1e-6)
    with pytest.raises(ValueError, match="2 patches"):
        FrequencyConsistencyLoss()(o[:1], o[:1], o[:1])


def test_enhanced_loss_combines_terms():
    logits, y = torch.tensor([[0.3], [-1.0]]), torch.tensor([1.0, 0.0])
    o = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    aux = {"semantic": {"orig": o, "low": -o, "high": o},
           "frequency": {"orig": o, "low": torch.tensor([[1.0, 0.0], [1.0, 0.0]]), "high": o}}
    out = EnhancedSemanticSpectralLoss(0.25, 2.0, semantic_weight=0.1, frequency_weight=0.05)(logits, y, aux)
    focal = FocalLoss()(logits, y)
    assert out["loss"].item() == pytest.approx(focal.item() + 0.1 * 4 / 3 + 0.05 * 0.25, rel=1e-6)
    with pytest.raises(ValueError, match="FREQUENCY_AWARE_ATTENTION"):
        EnhancedSemanticSpectralLoss()(logits, y, {"frequency": aux["frequency"]})
