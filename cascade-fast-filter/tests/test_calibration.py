"""Temperature scaling: the exact NLL solve hits the optimum, keeps ranking / 0.5-threshold metrics, halves ECE."""
import numpy as np
import pytest
from cascade_fast_filter.stage1.calibration import (
    calibrated_probs,
    calibration_summary,
    fit_temperature,
    nll,
    solve_temperature,
)
from common_utils.metrics import binary_metrics, ece
from scipy.optimize import minimize_scalar
from scipy.special import logit


def miscalibrated(t_true=2.5, n=20000, seed=0):
    """Labels drawn from sigmoid(z); the model reports t_true * z (over-confident by construction when t_true > 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(int)
    return t_true * z, y


def brute_force_temperature(logits, labels, bounds=(0.1, 10.0)):
    """NLL minimised over a 20001-point log grid, then golden-section refined to 1e-12 around the best point."""
    grid = np.geomspace(*bounds, 20001)
    k = int(np.argmin([nll(logits, labels, t) for t in grid]))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    return minimize_scalar(lambda t: nll(logits, labels, t), bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-12}).x


def test_exact_solve_matches_the_analytic_optimum():
    """All logits +-a, a fraction q of each side 'right': sigmoid(a / T*) = q, so T* = a / logit(q)."""
    a, q = 2.0, 0.7
    z = np.array([a] * 1000 + [-a] * 1000)
    y = np.array([1] * 700 + [0] * 300 + [0] * 700 + [1] * 300)
    fit = solve_temperature(z, y, (0.1, 10.0))
    assert fit["success"] and fit["at_bound"] is None
    assert abs(fit["temperature"] - a / logit(q)) < 1e-6
    assert abs(fit["slope"]) < 1e-12


@pytest.mark.parametrize("t_true, seed", [(2.5, 0), (0.6, 1), (1.0, 2)])
def test_exact_solve_matches_brute_force(t_true, seed):
    logits, y = miscalibrated(t_true, n=3000, seed=seed)
    t = fit_temperature(logits, y, "nll")["temperature"]
    assert abs(t - brute_force_temperature(logits, y)) < 1e-6
    assert t == pytest.approx(t_true, rel=0.1)


def test_bounds_are_reported():
    logits, y = miscalibrated(40.0)
    fit = fit_temperature(logits, y, "nll", (0.1, 10.0))
    assert fit["temperature"] == 10.0 and fit["at_bound"] == "t_max"
    separable = solve_temperature(np.array([-1.0, -0.5, 0.5, 2.0]), np.array([0, 0, 1, 1]), (0.1, 10.0))
    assert separable["temperature"] == 0.1 and separable["at_bound"] == "t_min"
    flat = solve_temperature(np.zeros(4), np.array([0, 1, 0, 1]))
    assert flat["temperature"] == 1.0 and not flat["success"]
    with pytest.raises(ValueError, match="bounds"):
        solve_temperature(np.ones(2), np.array([0, 1]), (2.0, 1.0))


def test_ece_objective_moves_off_its_start():
    """ECE is piecewise constant in T; the bounded search must still find a T near the truth."""
    logits, y = miscalibrated(2.5)
    fit = fit_temperature(logits, y, "ece", (0.1, 10.0), n_bins=15)
    assert fit["temperature"] == pytest.approx(2.5, rel=0.2)
    assert fit["objective_value"] < ece(y, calibrated_probs(logits, 1.0), n_bins=15)["value"] / 2


def test_calibration_keeps_auc_and_threshold_metrics_and_halves_ece():
    logits, y = miscalibrated(2.5, seed=1)
    t = fit_temperature(logits, y, "nll")["temperature"]
    before, after = binary_metrics(y, calibrated_probs(logits, 1.0)), binary_metrics(y, calibrated_probs(logits, t))
    assert before["auc"] == after["auc"]
    for key in ("acc", "f1"):
        assert before[key] == after[key]
    assert before["confusion_matrix"] == after["confusion_matrix"]
    summary = calibration_summary(logits, y, t, n_bins=15, scheme="positive")
    assert summary["ece_after"] < summary["ece_before"] / 2 and summary["ece_reduction"] > 0.5
    assert summary["nll_after"] < summary["nll_before"]


def test_unknown_objective_is_an_error():
    with pytest.raises(ValueError, match="objective"):
        fit_temperature(np.zeros(4), np.array([0, 1, 0, 1]), "brier")


def test_noise_floor_and_temperature_interval():
    """A calibrated model's ECE on few samples is noise of the size the floor reports; T's interval covers the truth
    and narrows with more videos."""
    from cascade_fast_filter.stage1.calibration import ece_noise_floor, temperature_interval
    logits, y = miscalibrated(1.0, n=300, seed=3)
    floor = ece_noise_floor(calibrated_probs(logits), n_bins=15, scheme="positive", draws=100)
    measured = ece(y, calibrated_probs(logits), n_bins=15)["value"]
    assert 0 < floor["mean"] < floor["p95"] and measured < 2 * floor["p95"]
    big = ece_noise_floor(calibrated_probs(np.tile(logits, 20)), n_bins=15, scheme="positive", draws=20)
    assert big["mean"] < floor["mean"] / 2
    logits, y = miscalibrated(2.0, n=2000, seed=4)
    videos = np.arange(2000) // 4  # 4 frames per video
    ci = temperature_interval(logits, y, videos, draws=60)
    assert ci["low"] < 2.0 < ci["high"] and ci["high"] - ci["low"] < 1.0
    wide = temperature_interval(logits[:200], y[:200], videos[:200], draws=60)
    assert wide["high"] - wide["low"] > ci["high"] - ci["low"]
