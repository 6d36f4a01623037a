"""Stacked float64 Sinkhorn vs geomloss' per-pair loop (values and gradients); loss edge cases; Kendall weighting."""
import math

import pytest
import torch
from clip_fairness_adapter.losses import (
    BatchedSinkhorn,
    DynamicFairnessLossWeighting,
    FairnessLoss,
    PairwiseFairnessLoss,
    Stage2FairnessLoss,
    sinkhorn_loop_reference,
)

BLUR, SCALING = 1e-4, 0.9


def clouds(sizes, dim=32, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.normalize(torch.randn(n, dim, generator=g, dtype=dtype), dim=-1) for n in sizes]


def grads(fn, tensors):
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    value = fn(leaves)
    value.sum().backward()
    return value.detach(), [t.grad for t in leaves]


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("diameter", [2.0, 4.0])
def test_stacked_equals_the_geomloss_loop_in_float64(diameter):
    """All 28 pairs of 8 unequal clouds in one stack vs one float64 geomloss call per pair: the values agree to
    float64 rounding (measured 2e-16) and so do the gradients, to the conditioning of the last softmin at
    eps = blur^2 = 1e-8 (measured 1e-9 relative)."""
    cs = clouds([4, 7, 12, 5, 9, 6, 11, 3], seed=1)
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    sk = BatchedSinkhorn(BLUR, 2, SCALING, diameter)
    ours, g_ours = grads(lambda c: sk.pairs(c, pairs), cs)
    ref, g_ref = grads(lambda c: sinkhorn_loop_reference([c[i] for i, _ in pairs], [c[j] for _, j in pairs], BLUR,
                                                         SCALING, diameter), cs)
    assert ours.dtype == torch.float64 and (ours - ref).abs().max() < 1e-13
    for a, b in zip(g_ours, g_ref):
        assert rel(a, b) < 1e-6


def test_stage_losses_equal_the_loop_with_gradients():
    """The Stage 1 and Stage 2 losses (which gather their clouds and share self terms) equal the per-pair loop."""
    torch.manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(40, 16, dtype=torch.float64), dim=-1)
    labels = torch.arange(40) % 2
    subgroups = torch.arange(40) // 2 % 8
    sk = BatchedSinkhorn(BLUR, 2, SCALING, 2.0)

    def loop(f, lab):
        rows = [f[(labels == lab) & (subgroups == g)] for g in range(8)]
        pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
        return sinkhorn_loop_reference([rows[i] for i, _ in pairs], [rows[j] for _, j in pairs], BLUR, SCALING,
                                       2.0).mean()

    stage2 = Stage2FairnessLoss(sk)
    ours, (g_ours,) = grads(lambda f: stage2(f[0], labels, subgroups)[0], [feats])
    ref, (g_ref,) = grads(lambda f: (loop(f[0], 0) + loop(f[0], 1)) / 2, [feats])
    assert abs(float(ours - ref)) < 1e-13 and rel(g_ours, g_ref) < 1e-6

    pairwise = PairwiseFairnessLoss(sk)
    ours, (g_ours,) = grads(lambda f: pairwise(f[0], subgroups)[0], [feats])
    groups = [feats[subgroups == g] for g in range(8)]
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    ref = sinkhorn_loop_reference([groups[i] for i, _ in pairs], [groups[j] for _, j in pairs], BLUR, SCALING,
                                  2.0).mean()
    assert abs(float(ours - ref)) < 1e-13

    glob = FairnessLoss(sk)
    ours, (g_ours,) = grads(lambda f: glob(f[0], subgroups)[0], [feats])
    ref, (g_ref,) = grads(lambda f: sinkhorn_loop_reference([f[0][subgroups == g] for g in range(8)],
                                                            [f[0].detach()] * 8, BLUR, SCALING, 2.0).mean(), [feats])
    assert abs(float(ours - ref)) < 1e-13 and rel(g_ours, g_ref) < 1e-6


def test_float32_and_autocast_inputs_are_computed_in_float64():
    """float32 features (or a bf16 autocast region) give the float64 result, rounded to float32: the iterations never
    run in the model's precision."""
    cs64 = clouds([5, 9, 3, 6], seed=2)
    pairs = [(0, 1), (0, 2), (1, 3), (2, 3)]
    sk = BatchedSinkhorn(BLUR, 2, SCALING, 2.0)
    ref, g_ref = grads(lambda c: sk.pairs(c, pairs), cs64)
    cs32 = [c.float() for c in cs64]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, g_ours = grads(lambda c: sk.pairs(c, pairs), cs32)
    assert ours.dtype == torch.float32 and all(g.dtype == torch.float32 for g in g_ours)
    torch.testing.assert_close(ours, ref.float(), rtol=1e-6, atol=1e-7)
    for a, b in zip(g_ours, g_ref):
        assert rel(a.double(), b) < 1e-5


def test_padding_carries_no_mass_and_gets_no_gradient():
    """Clouds padded to a larger cloud's size in the stack give their unpadded value; a cloud no pair uses gets zero
    gradient, every point of a used cloud a non-zero one."""
    small, other, large = clouds([2, 3, 9], seed=3)
    sk = BatchedSinkhorn(1e-2, 2, SCALING, 2.0)
    alone = sk.pairs([small, other], [(0, 1)])
    stacked = sk.pairs([small, other, large], [(0, 1), (2, 2)])
    assert abs(float(stacked[0] - alone[0])) < 1e-13 and abs(float(stacked[1])) < 1e-12  # S(a, a) = 0
    _, g = grads(lambda c: sk.pairs(c, [(0, 1)]), [small, other, large])
    assert torch.count_nonzero(g[0]) == g[0].numel() and torch.count_nonzero(g[1]) == g[1].numel()
    assert torch.count_nonzero(g[2]) == 0


@pytest.mark.parametrize("diameter", [None, 2.0])
def test_coincident_points_do_not_crash(diameter):
    p = torch.ones(4, 8) / math.sqrt(8)
    out = BatchedSinkhorn(blur=1e-4, diameter=diameter)([p, p[:2]], [p[:3], p])
    assert torch.isfinite(out).all() and out.abs().max() < 1e-6


def test_diameter_none_is_close_to_the_loop():
    """One diameter for the stack (geomloss estimates one per pair): the schedule starts elsewhere, results agree
    to ~1e-6."""
    xs, ys = clouds([3, 7, 2, 5], seed=4), clouds([6, 2, 9, 5], seed=5)
    ours = BatchedSinkhorn(blur=1e-4, diameter=None)(xs, ys)
    ref = sinkhorn_loop_reference(xs, ys, 1e-4, SCALING, None)
    assert (ours - ref).abs().max() < 1e-5


def test_truncation_mode_uses_first_rows_in_batch_order():
    feats = torch.cat(clouds([8], seed=7))
    sub = torch.tensor([0, 1, 0, 1, 0, 1, 0, 0])  # sg0 has 5 rows, sg1 has 3
    sk = BatchedSinkhorn(1e-4, diameter=2.0)
    _, trunc = PairwiseFairnessLoss(sk, truncate=True)(feats, sub)
    ref = sk([feats[[0, 2, 4]]], [feats[[1, 3, 5]]])[0]
    assert abs(float(trunc[(0, 1)]) - float(ref)) < 1e-12
    _, full = PairwiseFairnessLoss(sk, truncate=False)(feats, sub)
    ref_full = sk([feats[sub == 0]], [feats[sub == 1]])[0]
    assert abs(float(full[(0, 1)]) - float(ref_full)) < 1e-12 and abs(float(ref_full) - float(ref)) > 1e-4


def test_stage2_fairness_loss_class_and_group_thresholds():
    feats = torch.cat(clouds([10], seed=8))
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])  # real has 3 (< 4): skipped
    sub = torch.tensor([0, 0, 1, 2, 2, 3, 3, 5, -1, -1])  # fake: sg2, sg3 pairs; sg5 singleton; -1 unknown
    sk = BatchedSinkhorn(1e-4, diameter=2.0)
    loss, info = Stage2FairnessLoss(sk)(feats, labels, sub)
    assert info["real_pairs"] == 0 and info["fake_pairs"] == 1 and "real" not in info
    assert abs(float(loss) - float(info[("fake", 2, 3)])) < 1e-12
    assert abs(float(loss) - float(sk([feats[[3, 4]]], [feats[[5, 6]]])[0])) < 1e-12
    empty, info = Stage2FairnessLoss(sk)(feats, torch.zeros(10, dtype=torch.long), torch.arange(10))
    assert float(empty) == 0.0 and info["real_pairs"] == 0


def test_bad_input_is_an_error():
    sk = BatchedSinkhorn()
    with pytest.raises(ValueError, match="cloud 1"):
        sk.pairs([torch.ones(2, 3), torch.ones(0, 3)], [(0, 1)])
    with pytest.raises(ValueError, match="p=2"):
        BatchedSinkhorn(p=1)


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
