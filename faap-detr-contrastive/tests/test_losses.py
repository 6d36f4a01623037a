"""Contrastive, Wasserstein and image-score computations on hand-worked cases."""
import math

import pytest
import torch
import torch.nn.functional as F
from faap_detr.losses.contrastive import (
    AdaptiveScoreContrastiveLoss,
    BidirectionalScoreContrastiveLoss,
    split_counts,
)
from faap_detr.losses.objective import image_level_scores
from faap_detr.losses.wasserstein import wasserstein_1d_asymmetric


@pytest.mark.parametrize("n,rounding,expected", [
    (7, "floor", (2, 2)), (7, "round", (3, 3)), (12, "floor", (4, 4)), (12, "round", (5, 5)),
    (4, "round", (2, 2)), (5, "floor", (2, 2)), (10, "round", (4, 4)),
])
def test_split_sizes(n, rounding, expected):
    assert split_counts(n, 0.4, 0.4, 2, rounding) == expected


def test_split_sizes_never_overlap():
    assert split_counts(5, 0.6, 0.6, 2, "round") == (2, 3)  # 3 + 3 > 5 -> n//2 and the rest
    with pytest.raises(ValueError, match="rounding"):
        split_counts(5, 0.4, 0.4, 2, "ceil")


def test_split_sets_follow_the_scores():
    scores = torch.tensor([0.9, 0.1, 0.5, 0.8, 0.2, 0.3, 0.7])
    pos, anc = AdaptiveScoreContrastiveLoss(rounding="round").split(scores)
    assert pos.tolist() == [0, 3, 6] and anc.tolist() == [5, 4, 1]  # lowest score last


def _hand_infonce(z, rows, cols, t):
    total = 0.0
    for r in rows:
        num = math.log(sum(math.exp(float(z[r] @ z[c]) / t) for c in cols if c != r))
        den = math.log(sum(math.exp(float(z[r] @ z[j]) / t) for j in range(len(z)) if j != r))
        total += num - den
    return -total / len(rows)


def test_infonce_hand_case():
    z = F.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8], [-1.0, 0.1]]), dim=1)
    scores = torch.tensor([0.95, 0.9, 0.5, 0.2, 0.1])  # positives {0,1}, anchors {3,4}
    loss, info = AdaptiveScoreContrastiveLoss(temperature=0.5)(z, scores)
    assert info["n_positive"] == 2 and info["n_anchor"] == 2
    assert abs(info["score_gap"] - (0.925 - 0.15)) < 1e-6
    assert abs(loss.item() - _hand_infonce(z, [3, 4], [0, 1], 0.5)) < 1e-5
    # pulling the anchors onto the positives lowers the loss
    z2 = z.clone()
    z2[3], z2[4] = z[0], z[1]
    assert AdaptiveScoreContrastiveLoss(temperature=0.5)(z2, scores)[0] < loss


def test_bidirectional_hand_case():
    z = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    scores = torch.tensor([0.1, 0.9, 0.5, 0.8, 0.3, 0.05])  # positives {1,3}, anchors {0,5} (n=6 -> 2/2)
    loss, info = BidirectionalScoreContrastiveLoss(temperature=0.1, anchor_weight=1.0, positive_weight=0.3)(z, scores)
    a2p = _hand_infonce(z, [0, 5], [1, 3], 0.1)
    p2p = _hand_infonce(z, [1, 3], [1, 3], 0.1)
    assert abs(info["loss_a2p"] - a2p) < 1e-4 and abs(info["loss_p2p"] - p2p) < 1e-4
    assert abs(loss.item() - (a2p + 0.3 * p2p)) < 1e-4


def test_small_batch_gives_zero_loss():
    z = F.normalize(torch.randn(3, 8), dim=1)
    loss, info = AdaptiveScoreContrastiveLoss()(z, torch.rand(3))
    assert loss.item() == 0.0 and info["n_positive"] == 0


def test_wasserstein_hand_case():
    f = torch.tensor([0.4, 0.2], requires_grad=True)
    m = torch.tensor([0.5, 0.1, 0.3], requires_grad=True)
    # sorted f [0.2, 0.4] resized to 3 at positions [0, 0.5, 1] -> [0.2, 0.3, 0.4]; sorted m [0.1, 0.3, 0.5]
    # relu(m - f) = [0, 0, 0.1] -> mean 0.1/3
    loss = wasserstein_1d_asymmetric(f, m)
    assert abs(loss.item() - 0.1 / 3) < 1e-6
    loss.backward()
    # only the top quantile is penalised: d/d f_sorted[1] (= f[0] = 0.4) of -(0.4)/3
    assert torch.allclose(f.grad, torch.tensor([-1 / 3, 0.0]))
    assert m.grad is None
    assert wasserstein_1d_asymmetric(torch.tensor([0.9, 0.8]), torch.tensor([0.1])).item() == 0.0  # one-sided
    assert wasserstein_1d_asymmetric(torch.tensor([]), m).item() == 0.0


def test_image_level_scores():
    logits = torch.log(torch.tensor([
        [[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]],
        [[0.3, 0.3, 0.4], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]],
    ]))
    outputs = {"pred_logits": logits}
    targets = [{"labels": torch.tensor([1, 0])}, {"labels": torch.tensor([], dtype=torch.int64)}]
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1])), (torch.tensor([], dtype=torch.int64),) * 2]
    s = image_level_scores(outputs, targets, indices)
    assert torch.allclose(s, torch.tensor([(0.7 + 0.5) / 2, 0.0]))
