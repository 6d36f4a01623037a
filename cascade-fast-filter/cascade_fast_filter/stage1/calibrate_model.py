"""Task 1.2: temperature scaling P(fake) = sigmoid(z / T), T in [t_min, t_max], fitted on validation logits.

Objective `nll`: BCE of z/T minimised with L-BFGS-B (analytic gradient). Objective `ece`: ECE is piecewise
constant in T (L-BFGS-B's finite-difference gradient is zero and it returns its start), so a log-spaced grid
picks the bracket and a bounded scalar search refines it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from common_utils.metrics import ece
from common_utils.plots import plot_reliability
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit

from .utils import calibrated_probs, load_trained_model, predict_logits, read_split


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean BCE of sigmoid(z / T) against labels (stable softplus form)."""
    s = np.asarray(logits, dtype=np.float64) / temperature
    return float(np.mean(np.logaddexp(0.0, s) - np.asarray(labels, dtype=np.float64) * s))


def fit_temperature(logits, labels, objective="nll", bounds=(0.1, 10.0), n_bins=15, scheme="positive") -> dict:
    """Optimal T for `objective` in `bounds`. Returns dict(temperature, objective, method, success, message, nfev)."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if objective == "nll":
        def fun(t):
            t = float(t[0])
            s = z / t
            p = expit(s)
            grad = np.mean((p - y) * (-s / t))  # d/dT of mean BCE(z/T)
            return nll(z, y, t), np.array([grad])
        res = minimize(fun, x0=np.array([1.0]), jac=True, bounds=[tuple(bounds)], method="L-BFGS-B")
        return {"temperature": float(res.x[0]), "objective": "nll", "method": "L-BFGS-B",
                "success": bool(res.success), "message": str(res.message), "nfev": int(res.nfev)}
    if objective == "ece":
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
    raise ValueError(f"unknown calibration objective {objective!r}; expected 'nll' or 'ece'")


def calibration_summary(logits, labels, temperature: float, n_bins: int, scheme: str) -> dict:
    """NLL and ECE before (T = 1) and after (T) on one set of logits."""
    before, after = calibrated_probs(logits, 1.0), calibrated_probs(logits, temperature)
    e0, e1 = ece(labels, before, n_bins=n_bins, scheme=scheme), ece(labels, after, n_bins=n_bins, scheme=scheme)
    return {"n": int(len(labels)), "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature),
            "ece_before": e0["value"], "ece_after": e1["value"]}


def calibrate(cfg, checkpoint=None) -> dict:
    """Fit T on cfg.calibration.fit_split, report on report_split; writes calibration_temp.json and
    reliability_diagram.png into the run dir. Returns the JSON dict."""
    run_dir = Path(cfg.run_dir)
    model, _ = load_trained_model(checkpoint or run_dir / "best_model.pth", cfg)
    c = cfg.calibration
    cache = {}

    def logits_of(split):
        if split not in cache:
            rows = read_split(cfg, split)
            cache[split] = (predict_logits(model, rows, cfg), np.array([r.label for r in rows]))
        return cache[split]

    z_fit, y_fit = logits_of(c.fit_split)
    fit = fit_temperature(z_fit, y_fit, c.objective, (c.t_min, c.t_max), cfg.eval.n_bins, cfg.eval.ece_scheme)
    t = fit["temperature"]
    z_rep, y_rep = logits_of(c.report_split)
    ece_def = ece(y_rep, calibrated_probs(z_rep, t), n_bins=cfg.eval.n_bins, scheme=cfg.eval.ece_scheme)
    result = {
        "temperature": t,
        "objective": c.objective,
        "bounds": [c.t_min, c.t_max],
        "fit_split": c.fit_split,
        "report_split": c.report_split,
        "optimizer": fit,
        "fit": calibration_summary(z_fit, y_fit, t, cfg.eval.n_bins, cfg.eval.ece_scheme),
        "report": calibration_summary(z_rep, y_rep, t, cfg.eval.n_bins, cfg.eval.ece_scheme),
        "ece_definition": {"scheme": ece_def["scheme"], "n_bins": ece_def["n_bins"],
                           "definition": ece_def["definition"]},
    }
    if not fit["success"]:
        print(f"warning: temperature optimiser did not report success: {fit['message']}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "calibration_temp.json").write_text(json.dumps(result, indent=2))
    plot_reliability(y_rep, {"before (T=1)": calibrated_probs(z_rep, 1.0), f"after (T={t:.3f})":
                             calibrated_probs(z_rep, t)}, run_dir / "reliability_diagram.png",
                     n_bins=cfg.eval.n_bins, scheme=cfg.eval.ece_scheme,
                     title=f"Reliability on {c.report_split} (T fitted on {c.fit_split}, {c.objective})")
    print(f"T = {t:.4f} ({c.objective}, success={fit['success']}); {c.report_split} ECE "
          f"{result['report']['ece_before']:.4f} -> {result['report']['ece_after']:.4f}")
    return result
