"""Task 1.2: fit the temperature T on one split's logits (val) and report NLL/ECE before and after on a held-out
split (test), with the reliability diagram before/after on that split.

Writes ``calibration_temp.json`` and ``reliability_diagram.png`` into the run dir.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from common_utils.metrics import ece
from common_utils.plots import plot_reliability

from .calibration import (
    calibrated_probs,
    calibration_summary,
    ece_noise_floor,
    fit_temperature,
    temperature_interval,
)
from .data import read_split
from .model import load_trained_model, predict_logits


def calibrate(cfg, checkpoint=None) -> dict:
    """Fit T on cfg.calibration.fit_split, report on report_split. Returns the JSON dict it writes."""
    run_dir = Path(cfg.run_dir)
    model, _ = load_trained_model(checkpoint or run_dir / "best_model.pth", cfg)
    c, e = cfg.calibration, cfg.eval
    cache = {}

    def logits_of(split):
        if split not in cache:
            rows = read_split(cfg, split)
            labels = np.array([r.label for r in rows])
            cache[split] = (predict_logits(model, rows, cfg), labels, [r.video for r in rows])
        return cache[split]

    z_fit, y_fit, v_fit = logits_of(c.fit_split)
    fit = fit_temperature(z_fit, y_fit, c.objective, (c.t_min, c.t_max), e.n_bins, e.ece_scheme)
    t = fit["temperature"]
    z_rep, y_rep, _ = logits_of(c.report_split)
    definition = ece(y_rep, calibrated_probs(z_rep, t), n_bins=e.n_bins, scheme=e.ece_scheme, convention=e.convention)
    result = {
        "temperature": t,
        "objective": c.objective,
        "bounds": [c.t_min, c.t_max],
        "fit_split": c.fit_split,
        "report_split": c.report_split,
        "optimizer": fit,
        "fit": calibration_summary(z_fit, y_fit, t, e.n_bins, e.ece_scheme, e.convention),
        "report": calibration_summary(z_rep, y_rep, t, e.n_bins, e.ece_scheme, e.convention),
        "ece_definition": {k: definition[k] for k in ("scheme", "n_bins", "definition", "convention")},
        # diagnostics: how well the fit split pins T down, and the ECE a calibrated model would show from sampling
        "temperature_interval": temperature_interval(z_fit, y_fit, v_fit, (c.t_min, c.t_max)),
        "ece_noise_floor": {state: ece_noise_floor(calibrated_probs(z_rep, temp), e.n_bins, e.ece_scheme)
                            for state, temp in (("before", 1.0), ("after", t))},
    }
    if not fit["success"] or fit.get("at_bound"):
        print(f"warning: temperature: {fit['message']}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "calibration_temp.json").write_text(json.dumps(result, indent=2))
    plot_reliability(y_rep, {"before (T=1)": calibrated_probs(z_rep, 1.0), f"after (T={t:.3f})":
                             calibrated_probs(z_rep, t)}, run_dir / "reliability_diagram.png",
                     n_bins=e.n_bins, scheme=e.ece_scheme,
                     title=f"Reliability on {c.report_split} (T fitted on {c.fit_split}, {c.objective})")
    rep, ci, floor = result["report"], result["temperature_interval"], result["ece_noise_floor"]["after"]
    print(f"T = {t:.6f} ({c.objective}, fitted on {c.fit_split}; 95 % bootstrap over videos {ci['low']:.3f}-"
          f"{ci['high']:.3f}); {c.report_split} ECE {rep['ece_before']:.4f} -> {rep['ece_after']:.4f} (a calibrated "
          f"model would show {floor['mean']:.4f} from sampling alone), NLL {rep['nll_before']:.4f} -> "
          f"{rep['nll_after']:.4f}")
    return result
