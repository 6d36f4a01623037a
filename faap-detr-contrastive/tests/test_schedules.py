"""Epsilon / beta / contrastive-weight values at the schedule's epoch boundaries (design defaults)."""
import pytest
from faap_detr.schedules import contrastive_warmup_weight, scheduled_beta, scheduled_epsilon


@pytest.mark.parametrize("epoch,eps", [(0, 0.05), (1, 0.05 + 0.05 / 7), (7, 0.10), (8, 0.10), (13, 0.10),
                                       (14, 0.10 - 0.01 / 16), (21, 0.095), (29, 0.09), (40, 0.09)])
def test_epsilon_boundaries(epoch, eps):
    assert scheduled_epsilon(epoch) == pytest.approx(eps, abs=1e-12)


def test_beta_and_warmup():
    assert scheduled_beta(0, 30) == 0.5 and scheduled_beta(29, 30) == pytest.approx(0.6)
    assert scheduled_beta(0, 1) == 0.5
    assert [contrastive_warmup_weight(e, 3) for e in range(5)] == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    assert contrastive_warmup_weight(0, 0) == 1.0
