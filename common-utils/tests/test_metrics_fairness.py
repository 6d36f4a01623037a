import numpy as np
import pytest
from common_utils.metrics import fairness_metrics
from sklearn.metrics import roc_auc_score


def test_hand_computed_gaps():
    # group A: y=[0,0,1,1], pred=[1,0,1,1] -> FPR .5 TPR 1 acc .75 PR .75
    # group B: y=[0,0,0,1], pred=[0,0,0,0] -> FPR 0  TPR 0 acc .75 PR 0
    y = [0, 0, 1, 1, 0, 0, 0, 1]
    s = [0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.1, 0.4]
    g = ["A"] * 4 + ["B"] * 4
    m = fairness_metrics(y, s, g)
    a, b = m["groups"]["A"], m["groups"]["B"]
    assert (a["fpr"], a["tpr"], a["acc"], a["pr"]) == (0.5, 1.0, 0.75, 0.75)
    assert (b["fpr"], b["tpr"], b["acc"], b["pr"]) == (0.0, 0.0, 0.75, 0.0)
    assert m["F_FPR"] == pytest.approx(50.0)
    assert m["F_OAE"] == pytest.approx(0.0)
    assert m["F_DP"] == pytest.approx(75.0)
    assert m["F_MEO"] == pytest.approx(100.0)  # TPR gap 1.0 dominates
    assert a["auc"] == pytest.approx(roc_auc_score([0, 0, 1, 1], s[:4]))
    assert m["auc_gap"] == pytest.approx(abs(a["auc"] - b["auc"]))


def test_single_class_group_is_undefined_and_left_out_of_gaps():
    y = [0, 1, 0, 1, 1, 1]
    s = [0.2, 0.9, 0.6, 0.4, 0.8, 0.3]
    g = ["A", "A", "B", "B", "C", "C"]  # C has positives only
    m = fairness_metrics(y, s, g)
    c = m["groups"]["C"]
    assert c["auc"] is None and c["fpr"] is None and c["tnr"] is None
    assert c["tpr"] == 0.5
    # FPR gap uses A (0.0) and B (1.0) only
    assert m["F_FPR"] == pytest.approx(100.0)
    assert m["auc_gap"] == pytest.approx(1.0)  # A: 1.0, B: 0.0


def test_gaps_undefined_with_one_defined_group():
    m = fairness_metrics([1, 1, 0], [0.9, 0.8, 0.1], ["A", "A", "B"])
    assert m["auc_gap"] is None


@pytest.mark.parametrize("seed", range(3))
def test_per_group_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = rng.normal(size=400) + y
    g = rng.integers(0, 8, 400)
    m = fairness_metrics(y, s, g)
    for k in range(8):
        assert m["groups"][k]["auc"] == pytest.approx(roc_auc_score(y[g == k], s[g == k]))
        assert m["groups"][k]["n"] == int((g == k).sum())
