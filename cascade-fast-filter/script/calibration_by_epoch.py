"""Calibration of every epoch's fast filter: how T and the held-out ECE evolve while the filter trains.

Reads the epoch exports a run wrote with ``train.save_every_epoch=true`` (``<run_dir>/checkpoints/epoch_NNN.pth``) and
prints one row per epoch: val AUC, the NLL-optimal T fitted on the calibration fit split with its 95 % bootstrap
interval over videos, the report split's ECE before -> after and the ECE a calibrated model would show from sampling
alone, and filtration / leakage at t = 0.98 after calibration. Use the run's config and overrides:

    python script/calibration_by_epoch.py --config configs/tiny.yaml run_dir=... data.root=... [key=value ...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from cascade_fast_filter.config import get_config
from cascade_fast_filter.reporting import markdown_table
from cascade_fast_filter.stage1.calibration import (
    calibrated_probs,
    calibration_summary,
    ece_noise_floor,
    solve_temperature,
    temperature_interval,
)
from cascade_fast_filter.stage1.data import read_split
from cascade_fast_filter.stage1.model import load_trained_model, predict_logits
from cascade_fast_filter.stage1.thresholds import analyze_cascade_thresholds
from common_utils.metrics import roc_auc


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = get_config(args.config, args.overrides)
    c, e = cfg.calibration, cfg.eval
    fit_rows, rep_rows = read_split(cfg, c.fit_split), read_split(cfg, c.report_split)
    y_fit, y_rep = np.array([r.label for r in fit_rows]), np.array([r.label for r in rep_rows])
    exports = sorted((Path(cfg.run_dir) / "checkpoints").glob("epoch_*.pth"))
    if not exports:
        raise SystemExit(f"no epoch exports in {Path(cfg.run_dir) / 'checkpoints'}: train with "
                         "train.save_every_epoch=true")
    rows = []
    for path in exports:
        model, ckpt = load_trained_model(path, cfg)
        z_fit, z_rep = predict_logits(model, fit_rows, cfg), predict_logits(model, rep_rows, cfg)
        t = solve_temperature(z_fit, y_fit, (c.t_min, c.t_max))["temperature"]
        ci = temperature_interval(z_fit, y_fit, [r.video for r in fit_rows], (c.t_min, c.t_max), draws=100)
        s = calibration_summary(z_rep, y_rep, t, e.n_bins, e.ece_scheme)
        at98 = analyze_cascade_thresholds(calibrated_probs(z_rep, t), y_rep, [0.98])["0.98"]
        rows.append({"epoch": ckpt["epoch"], "val_auc": ckpt["val_auc"], "report_auc": roc_auc(y_rep, z_rep),
                     "T": t, "T_low": ci["low"], "T_high": ci["high"], "ece_before": s["ece_before"],
                     "ece_after": s["ece_after"], "ece_reduction": s["ece_reduction"],
                     "noise_floor": ece_noise_floor(calibrated_probs(z_rep, t), e.n_bins, e.ece_scheme,
                                                    draws=100)["mean"],
                     "nll_before": s["nll_before"], "nll_after": s["nll_after"],
                     "filtration_0.98": at98["filtration_rate"], "leakage_0.98": at98["leakage_rate"]})
    header = list(rows[0])
    print("\n".join(markdown_table(header, [[r[k] for k in header] for r in rows])))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
