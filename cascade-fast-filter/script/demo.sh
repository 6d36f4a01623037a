#!/usr/bin/env bash
# Demo of the stage-1 fast filter on video-structured synthetic data (script/demo.py says what it runs).
# Env: DEMO_SEED (every seed: data, clips, both trainings; default 0), DEMO_OUT, PYTHON. DATA_ROOT is not read: the
# demo generates its own ai_images set (n=400) with DEMO_SEED and derives its clips from it.
# Writes $DEMO_OUT/summary.json and $DEMO_OUT/criteria.json.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
DEMO_OUT=${DEMO_OUT:-$HERE/outputs/demo/cascade-fast-filter}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export DEMO_SEED=${DEMO_SEED:-0}
export TQDM_DISABLE=${TQDM_DISABLE:-1}  # no progress bars in the demo log
mkdir -p "$DEMO_OUT"
cd "$HERE"
exec "$PYTHON" script/demo.py "$DEMO_OUT"
