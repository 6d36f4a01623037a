"""Importance network range, prototype modes (EMA formula, fixed = global mean, learnable gets gradients)."""
import pytest
import torch
import torch.nn.functional as F
from audio_xai.model.xai_stage2 import ImportanceNetwork, PrototypeManager, XAIStage2, class_means


def test_importance_in_unit_interval():
    torch.manual_seed(0)
    net = ImportanceNetwork(8, 16)
    with torch.no_grad():
        net.net[-1].bias.fill_(50.0)
    h = torch.cat([torch.randn(2, 7, 8), 1e4 * torch.randn(2, 7, 8)])
    w = net(h)
    assert w.shape == (4, 7) and (w >= 0).all() and (w <= 1).all()
    with torch.no_grad():
        net.net[-1].bias.fill_(-50.0)
    assert (net(h) >= 0).all()


def test_ema_update_formula():
    """The first batch initialises p_c; up to 1 / (1 - m) batches p_c is their running mean (equal weights, so it
    is not left seeded by one batch, which made Stage 2's contrastive term drift), then p <- m p + (1 - m) mean."""
    torch.manual_seed(0)
    pm = PrototypeManager(4, "ema", momentum=0.75)                   # horizon 1 / (1 - m) = 4 batches
    mask = torch.tensor([[True, True, False], [True, True, True]])
    h1, y = torch.randn(2, 3, 4), torch.tensor([0, 1])
    pm.update(h1, y, mask)
    first = torch.stack([F.normalize(h1[0, :2], dim=-1).mean(0), F.normalize(h1[1], dim=-1).mean(0)])
    torch.testing.assert_close(pm.prototypes, first)                # first batch initialises
    batch_means = [first[1]]
    for _ in range(3):                                               # batches 2..4 of class 1: the running mean
        h = torch.randn(2, 3, 4)
        pm.update(h, torch.tensor([1, 1]), torch.ones(2, 3, dtype=torch.bool))
        batch_means.append(F.normalize(h, dim=-1).reshape(-1, 4).mean(0))
        torch.testing.assert_close(pm.prototypes[1], torch.stack(batch_means).mean(0))
    h5 = torch.randn(2, 3, 4)                                        # past the horizon: the EMA at m
    pm.update(h5, torch.tensor([1, 1]), torch.ones(2, 3, dtype=torch.bool))
    batch_mean = F.normalize(h5, dim=-1).reshape(-1, 4).mean(0)
    torch.testing.assert_close(pm.prototypes[1], 0.75 * torch.stack(batch_means).mean(0) + 0.25 * batch_mean)
    torch.testing.assert_close(pm.prototypes[0], first[0])          # absent class unchanged, not counted
    assert pm.updates.tolist() == [1, 5] and pm.initialized.all()
    assert not pm.prototypes.requires_grad



def test_prototypes_of_a_checkpoint_with_the_old_initialized_flag_continue_as_the_plain_ema():
    """A state dict from before ``updates`` (a bool ``initialized`` buffer) loads strictly: an initialised class
    takes the EMA at m from its next batch, as it would have; an uninitialised one starts from that batch."""
    pm = PrototypeManager(4, "ema", momentum=0.99)
    old = {"prototypes": torch.tensor([[1.0, 0, 0, 0], [0.0, 0, 0, 0]]), "initialized": torch.tensor([True, False])}
    pm.load_state_dict(old)  # strict
    assert pm.updates.tolist() == [99, 0]
    h = torch.randn(2, 3, 4)
    pm.update(h, torch.tensor([0, 1]), torch.ones(2, 3, dtype=torch.bool))
    means = F.normalize(h, dim=-1).mean(1)
    torch.testing.assert_close(pm.prototypes[0], 0.99 * old["prototypes"][0] + 0.01 * means[0])
    torch.testing.assert_close(pm.prototypes[1], means[1])

def test_dot_similarity_uses_unnormalised_frames():
    """model.similarity=dot: EMA / fixed prototypes are means of the raw frames and the loss is h . p / T."""
    torch.manual_seed(0)
    h, y = 3 * torch.randn(2, 4, 5), torch.tensor([0, 1])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    xai = XAIStage2(5, 8, ema_momentum=0.5, temperature=0.07, similarity="dot")
    xai.prototypes.update(h, y, mask)
    first = torch.stack([h[0, :3].mean(0), h[1].mean(0)])
    torch.testing.assert_close(xai.prototypes(), first)
    h2 = torch.randn(1, 4, 5)
    xai.prototypes.update(h2, torch.tensor([0]), torch.ones(1, 4, dtype=torch.bool))
    torch.testing.assert_close(xai.prototypes()[0], 0.5 * first[0] + 0.5 * h2[0].mean(0))
    p = xai.prototypes()
    torch.testing.assert_close(xai.similarity(h), h @ p.T)
    logits = h @ p.T / 0.07
    l_t = -logits.log_softmax(-1)[torch.arange(2)[:, None], torch.arange(4)[None], y[:, None]]
    l_bona = -logits.log_softmax(-1)[..., 1]
    w = xai(h)
    expected = (((w * l_t + (1 - w) * l_bona) * mask).sum(1) / mask.sum(1)).mean()
    torch.testing.assert_close(xai.loss(h, y, mask)["contrastive"], expected)
    means, _ = class_means(h, y, mask, normalize=False)
    torch.testing.assert_close(means, first)
    with pytest.raises(ValueError, match="similarity"):
        XAIStage2(5, 8, similarity="l2")


def test_importance_weighted_class_means_hand_case():
    """spoof_prototype=importance_weighted: a spoof utterance's frame counts w for spoof and 1 - w for bona fide."""
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 2.0], [4.0, 0.0]]])   # utt 0 spoof, utt 1 bona fide
    y, mask = torch.tensor([0, 1]), torch.tensor([[True, True], [True, False]])
    w = torch.tensor([[0.75, 0.25], [0.9, 0.9]])                               # w of the bona fide utt is ignored
    means, counts = class_means(h, y, mask, normalize=False, spoof_weight=w)
    torch.testing.assert_close(counts, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(means[0], torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(means[1], (0.25 * h[0, 0] + 0.75 * h[0, 1] + h[1, 0]) / 2)
    xai = XAIStage2(2, 4, similarity="dot", spoof_prototype="importance_weighted")
    xai.update_prototypes(h, y, mask)
    expected, _ = class_means(h, y, mask, normalize=False, spoof_weight=xai(h))
    torch.testing.assert_close(xai.prototypes(), expected)
    with pytest.raises(ValueError, match="spoof_prototype"):
        XAIStage2(2, 4, spoof_prototype="median")


def test_fixed_is_global_mean_and_other_modes_refuse_updates():
    torch.manual_seed(0)
    h, y = torch.randn(5, 6, 3), torch.tensor([0, 1, 1, 0, 1])
    mask = torch.rand(5, 6) > 0.3
    means, counts = class_means(h, y, mask)
    for c in (0, 1):
        frames = F.normalize(h[y == c], dim=-1)[mask[y == c]]
        torch.testing.assert_close(means[c], frames.mean(0))
        assert counts[c] == len(frames)
    pm = PrototypeManager(3, "fixed")
    pm.set_global_mean(means)
    torch.testing.assert_close(pm(), means)
    with pytest.raises(RuntimeError, match="ema"):
        pm.update(h, y, mask)
    with pytest.raises(RuntimeError, match="fixed"):
        PrototypeManager(3, "ema").set_global_mean(means)
    with pytest.raises(ValueError, match="prototype_mode"):
        PrototypeManager(3, "moving")


def test_learnable_prototypes_get_gradients_and_ema_does_not():
    torch.manual_seed(0)
    h, y, mask = torch.randn(2, 5, 6), torch.tensor([0, 1]), torch.ones(2, 5, dtype=torch.bool)
    xai = XAIStage2(6, 8, prototype_mode="learnable")
    xai.loss(h, y, mask)["total"].backward()
    assert xai.prototypes.prototypes.grad is not None and xai.prototypes.prototypes.grad.abs().sum() > 0
    assert all(p.grad is not None for p in xai.importance.parameters())
    ema = XAIStage2(6, 8, prototype_mode="ema")
    with pytest.raises(RuntimeError, match="not initialised"):
        ema.loss(h, y, mask)
    ema.prototypes.update(h, y, mask)
    ema.loss(h, y, mask)["total"].backward()
    names = [n for n, _ in ema.importance.named_parameters(prefix="importance")]
    assert [n for n, _ in ema.named_parameters()] == names


def test_importance_learns_to_localise_spoofed_frames():
    """Synthetic h(t): bona fide frames around mu_b; spoof utterances hold a segment around mu_s. Trained with the
    default objective (EMA prototypes, bona fide null), w(t) ranks the spoofed frames first (frame labels never
    seen) and is large only there."""
    from audio_xai.evaluate import frame_localisation

    g = torch.Generator().manual_seed(0)
    D, T = 16, 30
    mu_b, mu_s = torch.randn(D, generator=g), torch.randn(D, generator=g)

    def make(n):
        y = torch.arange(n) % 2                                   # 1 bona fide, 0 spoof
        h = 0.8 * torch.randn(n, T, D, generator=g) + mu_b
        seg = torch.ones(n, T, dtype=torch.int64)
        for i in range(0, n, 2):
            a = int(torch.randint(0, T - 10, (1,), generator=g))
            b = a + int(torch.randint(4, 10, (1,), generator=g))
            h[i, a:b] = 0.8 * torch.randn(b - a, D, generator=g) + mu_s
            seg[i, a:b] = 0
        return h, y, seg

    h, y, _ = make(64)
    h_test, y_test, seg_test = make(32)
    torch.manual_seed(0)
    xai = XAIStage2(D, 32)
    opt = torch.optim.Adam(xai.importance.parameters(), lr=1e-2)
    mask = torch.ones(16, T, dtype=torch.bool)
    for _ in range(100):
        idx = torch.randperm(64)[:16]
        xai.prototypes.update(h[idx], y[idx], mask)
        loss = xai.loss(h[idx], y[idx], mask)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w = xai(h_test)
    spoof = (y_test == 0).nonzero().flatten().tolist()
    result = frame_localisation([w[i].numpy() for i in spoof], [seg_test[i].numpy() for i in spoof])
    assert result["mean_utt_auc"] > 0.85 and result["frame_auc"] > 0.85
    # the default objective gives w an absolute scale: spoofed utterances carry far more total importance
    totals = w.sum(1)
    assert totals[y_test == 0].mean() > 2 * totals[y_test == 1].mean()
