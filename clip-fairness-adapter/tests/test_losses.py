"""Batched Sinkhorn (padding weights) vs the per-pair loop; loss edge cases; Kendall weighting formula."""
import math

import pytest
import torch
from clip_fairness_adapter.losses import (
    BatchedSinkhorn,
    DynamicFairnessLossWeighting,
    PairwiseFairnessLoss,
    Stage2FairnessLoss,
    pad_clouds,
)
from geomloss import SamplesLoss


def clouds(sizes, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1) for n in sizes]


@pytest.mark.parametrize("diameter", [None, 2.0])
def test_batched_equals_per_pair_loop_unequal_sizes(diameter):
    xs, ys = clouds([3, 7, 2, 5], seed=1), clouds([6, 2, 9, 5], seed=2)
    batched = BatchedSinkhorn(blur=1e-4, diameter=diameter)(xs, ys)
    for i, (x, y) in enumerate(zip(xs, ys)):  # geomloss on the unpadded pair, its own diameter estimate
        ref = SamplesLoss("sinkhorn", p=2, blur=1e-4, scaling=0.9, backend="tensorized")(x, y)
        assert abs(float(batched[i]) - float(ref)) < 1e-5, i


def test_padding_rows_get_zero_gradient_and_real_rows_do_not():
    xs, ys = clouds([2, 6], seed=3), clouds([4, 3], seed=4)
    x, a = pad_clouds(xs)
    y, b = pad_clouds(ys)
    x.requires_grad_(True)
    BatchedSinkhorn(blur=1e-2).padded(x, a, y, b, diameter=2.0).sum().backward()
    assert torch.count_nonzero(x.grad[0, 2:]) == 0  # padding of the 2-point cloud
    assert torch.count_nonzero(x.grad[0, :2]) > 0 and torch.count_nonzero(x.grad[1]) > 0
    assert torch.equal(a[0], torch.tensor([0.5, 0.5, 0, 0, 0, 0]))


def test_padding_without_weights_would_be_wrong():
    """Why the weights matter: uniform weights over padded rows change the value."""
    xs, ys = clouds([2, 6], seed=5), clouds([4, 3], seed=6)
    x, _ = pad_clouds(xs)
    y, _ = pad_clouds(ys)
    naive = SamplesLoss("sinkhorn", p=2, blur=1e-4, scaling=0.9, diameter=2.0, backend="tensorized")(x, y)
    exact = BatchedSinkhorn(blur=1e-4)(xs, ys)
    assert (naive - exact).abs().max() > 1e-2


@pytest.mark.parametrize("diameter", [None, 2.0])
def test_coincident_points_do_not_crash(diameter):
    p = torch.ones(4, 8) / math.sqrt(8)
    out = BatchedSinkhorn(blur=1e-4, diameter=diameter)([p, p[:2]], [p[:3], p])
    assert torch.isfinite(out).all() and out.abs().max() < 1e-6


def test_truncation_mode_uses_first_rows_in_batch_order():
    feats = torch.cat(clouds([8], seed=7))
    sub = torch.tensor([0, 1, 0, 1, 0, 1, 0, 0])  # sg0 has 5 rows, sg1 has 3
    _, trunc = PairwiseFairnessLoss(BatchedSinkhorn(1e-4), truncate=True)(feats, sub)
    ref = BatchedSinkhorn(1e-4)([feats[[0, 2, 4]]], [feats[[1, 3, 5]]])[0]
    assert abs(float(trunc[(0, 1)]) - float(ref)) < 1e-6
    _, full = PairwiseFairnessLoss(BatchedSinkhorn(1e-4), truncate=False)(feats, sub)
    ref_full = BatchedSinkhorn(1e-4)([feats[sub == 0]], [feats[sub == 1]])[0]
    assert abs(float(full[(0, 1)]) - float(ref_full)) < 1e-6 and abs(float(ref_full) - float(ref)) > 1e-4


def test_stage2_fairness_loss_class_and_group_thresholds():
    feats = torch.cat(clouds([10], seed=8))
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])  # real has 3 (< 4): skipped
    sub = torch.tensor([0, 0, 1, 2, 2, 3, 3, 5, -1, -1])  # fake: sg2, sg3 pairs; sg5 singleton; -1 unknown
    loss, info = Stage2FairnessLoss(BatchedSinkhorn(1e-4))(feats, labels, sub)
    assert info["real_pairs"] == 0 and info["fake_pairs"] == 1 and "real" not in info
    assert abs(float(loss) - float(info[("fake", 2, 3)])) < 1e-7
    empty, info = Stage2FairnessLoss(BatchedSinkhorn(1e-4))(feats, torch.zeros(10, dtype=torch.long),
                                                            torch.arange(10))
    assert float(empty) == 0.0 and info["real_pairs"] == 0


@pytest.mark.parametrize("form,c", [("design", 1.0), ("upstream", 0.5)])
def test_kendall_weighting_formula(form, c):
    w = DynamicFairnessLossWeighting(0.4, -0.7, form=form)
    lc, lf = torch.tensor(0.8), torch.tensor(0.05)
    total, lam, _ = w(lc, lf)
    expected = math.exp(-0.4) * 0.8 + c * 0.4 + math.exp(0.7) * 0.05 + c * -0.7
    assert abs(total.item() - expected) < 1e-6
    assert abs(float(lam) - math.exp(0.7) / (math.exp(-0.4) + math.exp(0.7) + 1e-8)) < 1e-6
    total.backward()  # d total / d s_fair = -exp(-s_fair) L_fair + c
    assert abs(float(w.log_var_fair.grad) - (-math.exp(0.7) * 0.05 + c)) < 1e-6
    with pytest.raises(ValueError, match="kendall_form"):
        DynamicFairnessLossWeighting(form="kendall")
