import numpy as np
import pytest
from common_utils.metrics import CONVENTIONS, ece, reliability_data
from sklearn.calibration import calibration_curve


@pytest.mark.parametrize("seed", range(4))
def test_positive_ece_matches_sklearn_calibration_curve(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p**1.5).astype(int)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=15, strategy="uniform")
    counts = np.histogram(p, bins=np.linspace(0, 1, 16))[0]
    expected = np.sum(counts[counts > 0] / p.size * np.abs(prob_true - prob_pred))
    out = ece(y, p)
    assert out["value"] == pytest.approx(expected)
    assert out["scheme"] == "positive" and out["n_bins"] == 15 and "positive-class" in out["definition"]


def test_ece_variants_on_a_hand_case():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.9, 0.9, 0.2, 0.6])
    # positive, 2 bins (0,.5],(.5,1]: bin0 {0.2 -> y1}: |1-0.2|=0.8, w=1/4; bin1 {.9,.9,.6 -> 1,0,1}: |2/3-0.8|, w=3/4
    assert ece(y, p, n_bins=2)["value"] == pytest.approx(0.25 * 0.8 + 0.75 * abs(2 / 3 - 0.8))
    # top-label: conf = .9,.9,.8,.6 ; correct = 1,0,0,1 ; all in bin (.5,1] -> |0.5 - 0.8|
    assert ece(y, p, n_bins=2, scheme="top_label")["value"] == pytest.approx(abs(0.5 - 0.8))
    # equal mass, 2 bins of the sorted probs [.2,.6 | .9,.9]: |1-0.4|*0.5 + |0.5-0.9|*0.5
    assert ece(y, p, n_bins=2, scheme="equal_mass")["value"] == pytest.approx(0.5 * 0.6 + 0.5 * 0.4)


def test_perfect_calibration_in_expectation_gives_small_ece():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert ece(y, p)["value"] < 0.01


def test_reliability_data_counts_and_empty_bins():
    data = reliability_data([0, 1, 1], [0.05, 0.95, 0.96], n_bins=10)
    assert data["count"].sum() == 3 and data["count"][0] == 1 and data["count"][9] == 2
    assert np.isnan(data["accuracy"][5])
    assert data["accuracy"][9] == 1.0 and data["confidence"][9] == pytest.approx(0.955)


def test_bad_probabilities_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece([0, 1], [0.2, 1.3])
    with pytest.raises(ValueError, match="unknown ECE scheme"):
        ece([0, 1], [0.2, 0.3], scheme="adaptive")


def test_every_convention_gives_the_scheme_definition():
    y, p = [1, 0, 1, 1], [0.9, 0.9, 0.2, 0.6]
    values = {c: ece(y, p, n_bins=2, convention=c) for c in CONVENTIONS}
    assert {v["value"] for v in values.values()} == {ece(y, p, n_bins=2)["value"]}
    assert values["pgfdd"]["convention"] == "pgfdd"
    with pytest.raises(ValueError, match="unknown convention 'torchmetrics' for ece"):
        ece(y, p, convention="torchmetrics")
    # top-label at p = .5: conf .5 either way; >= predicts label 1 (right for y=1), > predicts 0 (wrong)
    assert reliability_data([1], [0.5], n_bins=2, scheme="top_label")["accuracy"][0] == 1.0
    assert reliability_data([1], [0.5], n_bins=2, scheme="top_label", convention="deepfakebench")["accuracy"][0] == 0.0
