import numpy as np
import pytest
from common_utils.metrics import average_precision, binary_metrics, eer, roc_auc, video_auc
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y * rng.uniform(0.2, 2.0)
    m = binary_metrics(y, s, threshold=0.3)
    pred = (s >= 0.3).astype(int)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["ap"] == pytest.approx(average_precision_score(y, s))
    assert m["acc"] == pytest.approx(accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert (m["n"], m["n_pos"], m["n_neg"]) == (300, y.sum(), 300 - y.sum())


@pytest.mark.parametrize("seed", range(5))
def test_eer_is_where_fpr_meets_fnr(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2000)
    s = rng.normal(size=2000) + 1.5 * y
    rate, thr = eer(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    # the EER lies between the closest ROC points on either side of FPR = FNR
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(rate - (fpr[i] + 1 - tpr[i]) / 2) < 0.01
    # at the returned threshold the empirical FPR and FNR are both close to the EER
    assert abs(np.mean(s[y == 0] >= thr) - rate) < 0.01
    assert abs(np.mean(s[y == 1] < thr) - rate) < 0.01


def test_eer_hand_case():
    # perfectly separated -> 0; perfectly inverted -> 1
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    assert eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])[0] == 1.0


def test_single_class_is_undefined_not_zero():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert m["auc"] is None and m["ap"] is None and m["eer"] is None
    assert m["acc"] == pytest.approx(2 / 3)
    assert roc_auc([0, 0], [0.1, 0.2]) is None and average_precision([0, 0], [0.1, 0.2]) is None


def test_video_auc_averages_frames_per_video():
    labels = [0, 0, 1, 1, 1, 0]
    scores = [0.1, 0.9, 0.8, 0.6, 0.7, 0.2]
    videos = ["a", "a", "b", "b", "c", "d"]
    # video means: a=0.5 (0), b=0.7 (1), c=0.7 (1), d=0.2 (0)
    assert video_auc(labels, scores, videos) == pytest.approx(roc_auc_score([0, 1, 1, 0], [0.5, 0.7, 0.7, 0.2]))
    with pytest.raises(ValueError, match="mixes labels"):
        video_auc([0, 1], [0.1, 0.2], ["a", "a"])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        binary_metrics([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.1, float("nan")])
