#!/usr/bin/env bash
# Demo on the synthetic ai_images set: a cheap stage-1 filter (32 px, 20 epochs) and a stage-2 model (96 px), both
# with the tiny config; stage 1 is calibrated (fit val, report test), evaluated, and combined with stage 2's test
# scores into the cascade trade-off. The CLI steps run in one interpreter (same arguments as `python -m
# cascade_fast_filter ...`) to spare 8 start-ups. Env: DATA_ROOT (holds ai_images/), DEMO_OUT, PYTHON.
# The shared demo set (n=160: 80 train images per class, 65 val) is too small for the filter to learn the task and
# for a temperature fitted on val to transfer, so unless $DATA_ROOT/ai_images has n >= 400 the demo writes its own
# n=400 set (seed 0, ~6 s) to $DEMO_OUT/data/ai_images. Writes $DEMO_OUT/summary.json.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
DATA_ROOT=${DATA_ROOT:-$HERE/outputs/data}
DEMO_OUT=${DEMO_OUT:-$HERE/outputs/demo/cascade-fast-filter}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$DEMO_OUT"
cd "$HERE"
"$PYTHON" - "$DATA_ROOT/ai_images" "$DEMO_OUT" <<'PY'
import json
import sys
import time
from pathlib import Path

from cascade_fast_filter.__main__ import main

N_IMAGES = 400  # reals and fakes each: 200/80/120 per class in train/val/test


def synthetic_info(root: Path) -> dict:
    """common_utils.synthetic's synthetic_info.json of a generated set ({} when there is none)."""
    info = root / "synthetic_info.json"
    ok = info.is_file() and (root / "manifests" / "test_manifest.csv").is_file()
    return json.loads(info.read_text()) if ok else {}


data, out = Path(sys.argv[1]), Path(sys.argv[2])
start = time.time()
if synthetic_info(data).get("n", 0) < N_IMAGES:
    data = out / "data" / "ai_images"
    if synthetic_info(data).get("n") != N_IMAGES:
        from common_utils.synthetic.ai_images import generate
        generate(data, n=N_IMAGES, seed=0)
tiny = ["--config", "configs/tiny.yaml", f"data.root={data}"]
s2 = [*tiny, f"run_dir={out / 'stage2'}", "train.epochs=8"]
s1 = [*tiny, f"run_dir={out / 'stage1'}", "model.input_size=32", "train.epochs=20"]
scores = str(out / "stage2_test_scores.csv")
steps = [
    # stage 2 (the expensive detector): any detector's score CSV works; here our own 96-px model
    ["train", *s2], ["calibrate", *s2],
    ["infer", *s2, "--input", str(data / "manifests" / "test_manifest.csv"), "--output", scores],
    # stage 1: train -> calibrate (fit val, report test) -> evaluate -> cascade
    ["train", *s1], ["calibrate", *s1, "calibration.report_split=test"],
    ["evaluate", *s1, "evaluation.split=test", f"cascade.stage2_scores={scores}"],
    ["cascade", *s1, "--stage2-scores", scores],
]
for argv in steps:
    print("+ python -m cascade_fast_filter", " ".join(argv), flush=True)
    main(argv)

s1_dir = out / "stage1"
cal = json.loads((s1_dir / "calibration_temp.json").read_text())
ev = json.loads((s1_dir / "evaluation_report.json").read_text())
casc = json.loads((s1_dir / "cascade_report.json").read_text())
best = max(json.loads(line)["val_auc"] for line in (s1_dir / "metrics.jsonl").read_text().splitlines())
at98 = ev["overall"]["cascade"]["0.98"]
op = casc["operating_point"]
r = lambda v: None if v is None else round(v, 4)
headline = {
    "stage1_best_val_auc": r(best),
    "stage1_test_auc": r(ev["overall"]["auc"]),
    "temperature": r(cal["temperature"]),
    "test_ece_before": r(cal["report"]["ece_before"]),
    "test_ece_after": r(cal["report"]["ece_after"]),
    "test_nll_before": r(cal["report"]["nll_before"]),
    "test_nll_after": r(cal["report"]["nll_after"]),
    "filtration@0.98": r(at98["filtration_rate"]),
    "leakage@0.98": r(at98["leakage_rate"]),
    "filtration_bound@0.98": r(at98["filtration_bound"]),
    "stage1_gflops": r(casc["c1_gflops"]),
    "stage2_gflops": r(casc["c2_gflops"]),
    "stage2_only_test_auc": r(casc["references"]["stage 2 only"]["auc"]),
    "cascade_threshold": None if op is None else op["threshold"],
    "cascade_test_auc": None if op is None else r(op["auc"]),
    "cascade_cost_vs_stage2": None if op is None else r(op["avg_cost_gflops"] / casc["c2_gflops"]),
}
seconds = round(time.time() - start)
info = synthetic_info(data)
summary = {
    "status": "ok", "headline": headline,
    "figures": [str(p.relative_to(out)) for p in sorted(s1_dir.glob("*.png"))],
    "notes": f"synthetic ai_images (n={info['n']}: as many reals as fakes, seed {info['seed']}, {data}), tiny config (timm "
             f"test_efficientnet, random init; stage 1 at 32 px for 20 epochs, stage 2 at 96 px for 8), CPU, "
             f"{seconds} s. Settled as real when P(real) >= t; operating point = cheapest t with leakage <= "
             f"{casc['max_leakage']}. ECE: {cal['ece_definition']['definition']}, {cal['ece_definition']['n_bins']} "
             f"bins; T fitted on val ({cal['fit']['n']} images), NLL and ECE reported on the held-out test split "
             f"({cal['report']['n']} images; test NLL {cal['report']['nll_before']:.3f} -> "
             f"{cal['report']['nll_after']:.3f}; T and the ECE change vary with the training seed, see README).",
}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
PY
