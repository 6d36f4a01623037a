"""Temperature scaling: recovers a known T, keeps ranking / 0.5-threshold metrics, halves ECE."""
import numpy as np
import pytest
from cascade_fast_filter.stage1.calibrate_model import calibration_summary, fit_temperature, nll
from cascade_fast_filter.stage1.utils import calibrated_probs
from common_utils.metrics import binary_metrics, ece


def miscalibrated(t_true=2.5, n=20000, seed=0):
    """Labels drawn from sigmoid(z); the model reports t_true * z (over-confident by construction)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(int)
    return t_true * z, y


def test_nll_fit_recovers_known_temperature():
    logits, y = miscalibrated(2.5)
    fit = fit_temperature(logits, y, "nll", (0.1, 10.0))
    assert fit["success"] and fit["method"] == "L-BFGS-B"
    assert fit["temperature"] == pytest.approx(2.5, rel=0.05)
    # the optimum really is a minimum of the NLL
    t = fit["temperature"]
    assert nll(logits, y, t) <= min(nll(logits, y, t * 0.95), nll(logits, y, t * 1.05))


def test_under_confident_logits_give_t_below_one():
    logits, y = miscalibrated(0.5)
    assert fit_temperature(logits, y, "nll")["temperature"] == pytest.approx(0.5, rel=0.05)


def test_ece_objective_moves_off_its_start():
    """ECE is piecewise constant in T; the bounded search must still find a T near the truth."""
    logits, y = miscalibrated(2.5)
    fit = fit_temperature(logits, y, "ece", (0.1, 10.0), n_bins=15)
    assert fit["temperature"] == pytest.approx(2.5, rel=0.2)
    assert fit["objective_value"] < ece(y, calibrated_probs(logits, 1.0), n_bins=15)["value"] / 2


def test_temperature_is_bounded():
    logits, y = miscalibrated(40.0)
    assert fit_temperature(logits, y, "nll", (0.1, 10.0))["temperature"] == pytest.approx(10.0)


def test_calibration_keeps_auc_and_threshold_metrics_and_halves_ece():
    logits, y = miscalibrated(2.5, seed=1)
    t = fit_temperature(logits, y, "nll")["temperature"]
    before, after = binary_metrics(y, calibrated_probs(logits, 1.0)), binary_metrics(y, calibrated_probs(logits, t))
    assert before["auc"] == after["auc"]
    for key in ("acc", "f1"):
        assert before[key] == after[key]
    assert before["confusion_matrix"] == after["confusion_matrix"]
    summary = calibration_summary(logits, y, t, n_bins=15, scheme="positive")
    assert summary["ece_after"] < summary["ece_before"] / 2
    assert summary["nll_after"] < summary["nll_before"]


def test_unknown_objective_is_an_error():
    with pytest.raises(ValueError, match="objective"):
        fit_temperature(np.zeros(4), np.array([0, 1, 0, 1]), "brier")
