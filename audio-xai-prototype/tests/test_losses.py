"""Each Stage 2 loss term on hand-computed cases."""
import math

import pytest
import torch
from audio_xai.losses import (
    bonafide_importance,
    frame_contrastive,
    frame_similarity,
    importance_weighted,
    spoof_concentration,
    stage2_loss,
    temporal_smoothness,
)


def test_frame_contrastive_hand_case():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])          # 0 spoof, 1 bona fide
    h = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])              # frame 0 = spoof direction, frame 1 = bona fide
    T = 0.5
    l_spoof = frame_contrastive(h, protos, torch.tensor([0]), T)
    # frame 0: logits (1/T, 0) -> -log(e^2 / (e^2 + 1)); frame 1: logits (0, 1/T) -> -log(1 / (1 + e^2))
    expected = torch.tensor([[math.log1p(math.exp(-2)), math.log1p(math.exp(2))]])
    torch.testing.assert_close(l_spoof, expected)
    torch.testing.assert_close(frame_contrastive(h, protos, torch.tensor([1]), T), expected.flip(-1))


def test_frame_contrastive_dot_product_hand_case():
    """The design's literal form: logits h(t) . p_c / T on unnormalised vectors (norms matter, unlike cosine)."""
    protos = torch.tensor([[2.0, 0.0], [1.0, 1.0]])          # 0 spoof, 1 bona fide
    h = torch.tensor([[[0.5, 0.0], [0.1, 0.3]]])
    T = 0.5
    # frame 0: dots (1.0, 0.5) -> logits (2, 1); frame 1: dots (0.2, 0.4) -> logits (0.4, 0.8)
    l_bona = frame_contrastive(h, protos, torch.tensor([1]), T, "dot")
    expected = torch.tensor([[math.log1p(math.exp(1.0)), math.log1p(math.exp(-0.4))]])
    torch.testing.assert_close(l_bona, expected)
    torch.testing.assert_close(frame_similarity(h, protos, "dot"), torch.tensor([[[1.0, 0.5], [0.2, 0.4]]]))
    # cosine on the same case: frame 0 cos (1, 1/sqrt2), frame 1 cos (1/sqrt10, 4/sqrt20)
    c0, c1 = (1.0, 2 ** -0.5), (10 ** -0.5, 4 / 20 ** 0.5)
    expected_cos = torch.tensor([[math.log1p(math.exp((c[0] - c[1]) / T)) for c in (c0, c1)]])
    torch.testing.assert_close(frame_contrastive(h, protos, torch.tensor([1]), T), expected_cos)
    # scaling the frames changes the dot form only
    torch.testing.assert_close(frame_contrastive(10 * h, protos, torch.tensor([1]), T), expected_cos)
    assert not torch.allclose(frame_contrastive(10 * h, protos, torch.tensor([1]), T, "dot"), expected)
    with pytest.raises(ValueError, match="similarity"):
        frame_contrastive(h, protos, torch.tensor([1]), T, "euclid")


def test_importance_objectives():
    loss_y = torch.tensor([[1.0, 3.0, 100.0]])
    loss_b = torch.tensor([[2.0, 0.5, 7.0]])
    w = torch.tensor([[1.0, 0.5, 0.9]])
    mask = torch.tensor([[True, True, False]])                # the third frame is padding
    assert importance_weighted(loss_y, loss_b, w, mask, "weighted_mean").item() == pytest.approx((1 + 1.5) / 1.5,
                                                                                                  rel=1e-5)
    assert importance_weighted(loss_y, loss_b, w, mask, "frames").item() == pytest.approx((1 + 1.5) / 2)
    # bonafide_null: w l_y + (1 - w) l_bona per frame, over the valid frames
    assert importance_weighted(loss_y, loss_b, w, mask).item() == pytest.approx((1.0 + 0.5 * 3 + 0.5 * 0.5) / 2)
    # the design's literal form collapses: scaling w down lowers it; weighted_mean is scale-invariant
    assert importance_weighted(loss_y, loss_b, 0.1 * w, mask, "frames") < importance_weighted(loss_y, loss_b, w, mask,
                                                                                               "frames")
    assert importance_weighted(loss_y, loss_b, 0.1 * w, mask, "weighted_mean").item() == pytest.approx(
        importance_weighted(loss_y, loss_b, w, mask, "weighted_mean").item(), rel=1e-4)
    with pytest.raises(ValueError, match="importance_objective"):
        importance_weighted(loss_y, loss_b, w, mask, "sum")


def test_bonafide_null_fixes_the_scale_of_w():
    """Under bonafide_null the optimal w(t) is 1 where the spoof class explains frame t better than the bona fide
    prototype and 0 where it does not (neither 0 everywhere nor scale-free); in a bona fide utterance w is free."""
    loss_y = torch.tensor([[0.1, 2.0, 0.3, 1.5]])             # spoof utterance: l_t(spoof)
    loss_b = torch.tensor([[1.2, 0.2, 1.0, 0.4]])             # l_t(bona fide)
    mask = torch.ones(1, 4, dtype=torch.bool)
    w = torch.full((1, 4), 0.5, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        importance_weighted(loss_y, loss_b, w, mask).backward()
        opt.step()
        with torch.no_grad():
            w.clamp_(0, 1)
    assert w.detach().tolist() == [[1.0, 0.0, 1.0, 0.0]]
    bona = importance_weighted(loss_b, loss_b, torch.rand(1, 4), mask)
    assert bona.item() == pytest.approx(loss_b.mean().item())


def test_bonafide_regulariser_only_counts_bonafide():
    w = torch.tensor([[0.2, 0.4, 0.9], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert bonafide_importance(w, torch.tensor([1, 0]), mask).item() == pytest.approx(0.3)
    assert bonafide_importance(w, torch.tensor([0, 0]), mask).item() == 0.0


def test_temporal_smoothness_hand_case():
    w = torch.tensor([[0.0, 1.0, 1.0, 0.5]])
    mask = torch.tensor([[True, True, True, False]])
    assert temporal_smoothness(w, mask).item() == pytest.approx((1 + 0) / 2)
    assert temporal_smoothness(torch.full((2, 5), 0.3), torch.ones(2, 5, dtype=torch.bool)).item() == 0.0


def test_spoof_concentration_hand_case():
    mask = torch.ones(2, 4, dtype=torch.bool)
    y = torch.tensor([0, 1])
    uniform = torch.full((2, 4), 0.5)
    peaked = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    assert spoof_concentration(uniform, y, mask).item() == pytest.approx(1.0, abs=1e-4)
    assert spoof_concentration(peaked, y, mask).item() == pytest.approx(0.0, abs=1e-4)
    half = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert spoof_concentration(half, y, mask).item() == pytest.approx(math.log(2) / math.log(4), abs=1e-4)
    assert spoof_concentration(uniform, torch.tensor([1, 1]), mask).item() == 0.0


def test_total_is_the_weighted_sum():
    torch.manual_seed(0)
    h, w = torch.randn(3, 5, 4), torch.rand(3, 5)
    y, mask = torch.tensor([0, 1, 0]), torch.ones(3, 5, dtype=torch.bool)
    lambdas = {"bonafide_reg": 0.1, "temporal_smooth": 0.2, "sparsity": 0.3}
    t = stage2_loss(h, w, torch.randn(2, 4), y, mask, 0.07, lambdas)
    expected = t["contrastive"] + 0.1 * t["bonafide_reg"] + 0.2 * t["temporal_smooth"] + 0.3 * t["sparsity"]
    torch.testing.assert_close(t["total"], expected)
