"""Temperature scaling of the fast filter's logit: P(fake) = sigmoid(z / T), T in [t_min, t_max].

NLL objective, solved exactly: with beta = 1/T the mean BCE of sigmoid(beta z) is convex in beta and its derivative
g(beta) = mean((sigmoid(beta z) - y) z) is non-decreasing, so the optimum is the root of g (Brent's method to machine
precision), or a bound when g keeps one sign on [1/t_max, 1/t_min]. ECE objective: ECE is piecewise constant in T
(a gradient method returns its start), so a log-spaced grid picks the bracket and a bounded scalar search refines it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from common_utils.metrics import ece
from scipy.optimize import brentq, minimize_scalar
from scipy.special import expit


def calibrated_probs(logits, temperature: float = 1.0) -> np.ndarray:
    """P(fake) = sigmoid(z / T)."""
    return expit(np.asarray(logits, dtype=np.float64) / temperature)


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean BCE of sigmoid(z / T) against labels (stable softplus form)."""
    s = np.asarray(logits, dtype=np.float64) / temperature
    return float(np.mean(np.logaddexp(0.0, s) - np.asarray(labels, dtype=np.float64) * s))


def nll_slope(logits, labels, beta: float) -> float:
    """d NLL / d beta at beta = 1/T: mean((sigmoid(beta z) - y) z); non-decreasing in beta."""
    z = np.asarray(logits, dtype=np.float64)
    return float(np.mean((expit(beta * z) - np.asarray(labels, dtype=np.float64)) * z))


def solve_temperature(logits, labels, bounds=(0.1, 10.0)) -> dict:
    """The NLL-optimal T in ``bounds`` (see the module docstring). Returns dict(temperature, objective, method,
    success, at_bound (None | "t_min" | "t_max"), message, nfev, slope (d NLL / d(1/T) at the solution))."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    t_min, t_max = float(bounds[0]), float(bounds[1])
    if not 0 < t_min < t_max:
        raise ValueError(f"temperature bounds must satisfy 0 < t_min < t_max, got {bounds}")
    out = {"objective": "nll", "method": "brentq on dNLL/d(1/T) (NLL convex in 1/T)", "success": True,
           "at_bound": None, "nfev": 0}
    if z.size == 0 or not np.any(z):
        return {**out, "temperature": 1.0, "success": False, "slope": 0.0,
                "message": "every logit is 0: the NLL does not depend on T; T = 1 kept"}
    lo, hi = 1.0 / t_max, 1.0 / t_min
    g_lo, g_hi = nll_slope(z, y, lo), nll_slope(z, y, hi)
    if g_lo >= 0:  # NLL rises with beta from the start: the smallest beta (largest T) is best
        return {**out, "temperature": t_max, "at_bound": "t_max", "slope": g_lo,
                "message": f"NLL still falls at T = t_max = {t_max}: the optimum lies beyond the bound"}
    if g_hi <= 0:
        return {**out, "temperature": t_min, "at_bound": "t_min", "slope": g_hi,
                "message": f"NLL still falls at T = t_min = {t_min} (e.g. separable logits): the optimum lies "
                           f"beyond the bound"}
    beta, res = brentq(lambda b: nll_slope(z, y, b), lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps,
                       maxiter=500, full_output=True)
    return {**out, "temperature": float(1.0 / beta), "success": bool(res.converged), "slope": nll_slope(z, y, beta),
            "message": res.flag, "nfev": int(res.function_calls)}


def fit_ece_temperature(logits, labels, bounds=(0.1, 10.0), n_bins=15, scheme="positive") -> dict:
    """T minimising ECE: 201-point log grid, then a bounded scalar search around the best grid point."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels)

    def fun(t):
        return ece(y, calibrated_probs(z, t), n_bins=n_bins, scheme=scheme)["value"]

    grid = np.geomspace(bounds[0], bounds[1], 201)
    values = np.array([fun(t) for t in grid])
    k = int(np.argmin(values))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = minimize_scalar(fun, bounds=(lo, hi), method="bounded")
    t_best, best = (float(res.x), float(res.fun)) if res.fun <= values[k] else (float(grid[k]), float(values[k]))
    return {"temperature": t_best, "objective": "ece", "method": "log-grid(201) + bounded minimize_scalar",
            "success": bool(res.success), "message": str(res.message), "nfev": int(res.nfev) + len(grid),
            "objective_value": best}


def fit_temperature(logits, labels, objective="nll", bounds=(0.1, 10.0), n_bins=15, scheme="positive") -> dict:
    """Optimal T for ``objective`` (``nll`` exact, ``ece`` searched) in ``bounds``."""
    if objective == "nll":
        return solve_temperature(logits, labels, bounds)
    if objective == "ece":
        return fit_ece_temperature(logits, labels, bounds, n_bins, scheme)
    raise ValueError(f"unknown calibration objective {objective!r}; expected 'nll' or 'ece'")


def calibration_summary(logits, labels, temperature: float, n_bins: int, scheme: str,
                        convention: str = "ours") -> dict:
    """NLL and ECE before (T = 1) and after (T) on one set of logits, and the relative ECE reduction."""
    before, after = calibrated_probs(logits, 1.0), calibrated_probs(logits, temperature)
    e0 = ece(labels, before, n_bins=n_bins, scheme=scheme, convention=convention)["value"]
    e1 = ece(labels, after, n_bins=n_bins, scheme=scheme, convention=convention)["value"]
    return {"n": int(len(labels)), "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature),
            "ece_before": e0, "ece_after": e1, "ece_reduction": (e0 - e1) / e0 if e0 else None}


def ece_noise_floor(probs, n_bins: int, scheme: str, draws: int = 200, seed: int = 0) -> dict:
    """ECE a perfectly calibrated model with these P(fake) would show on this many samples: labels drawn from
    Bernoulli(p), ECE measured, ``draws`` times. Returns {"mean", "p95"}: an ECE at this level is sampling noise,
    which no temperature can remove."""
    p = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = [ece((rng.random(p.size) < p).astype(int), p, n_bins=n_bins, scheme=scheme)["value"] for _ in range(draws)]
    return {"mean": float(np.mean(values)), "p95": float(np.quantile(values, 0.95)), "draws": draws}


def temperature_interval(logits, labels, groups, bounds=(0.1, 10.0), draws: int = 200, seed: int = 0) -> dict:
    """95 % bootstrap interval of the NLL-optimal T, resampling whole ``groups`` (videos: their frames are not
    independent). Returns {"low", "high", "draws"}."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    keys, index = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    members = [np.flatnonzero(index == k) for k in range(len(keys))]
    rng = np.random.default_rng(seed)
    ts = []
    for _ in range(draws):
        pick = np.concatenate([members[k] for k in rng.integers(0, len(keys), len(keys))])
        ts.append(solve_temperature(z[pick], y[pick], bounds)["temperature"])
    return {"low": float(np.quantile(ts, 0.025)), "high": float(np.quantile(ts, 0.975)), "draws": draws}


def load_temperature(path) -> float:
    """T from calibration_temp.json."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m cascade_fast_filter calibrate` first")
    data = json.loads(path.read_text())
    if "temperature" not in data:
        raise KeyError(f"{path}: no 'temperature' key")
    return float(data["temperature"])
