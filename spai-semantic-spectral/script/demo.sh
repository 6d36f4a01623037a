#!/usr/bin/env bash
# Demo: base SPAI vs. SPAI + semantic-spectral fusion (tiny configs, random init) on the synthetic ai_images
# data; per-"generator" test AUC -> $DEMO_OUT/summary.json. Env: DATA_ROOT, DEMO_OUT, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DEMO_OUT=${DEMO_OUT:-outputs/demo/spai-semantic-spectral}
DATA=${DATA_ROOT:-$DEMO_OUT/data}/ai_images
export OMP_NUM_THREADS=1  # one thread: the same numbers on every rerun (and the fastest on 2 shared cores)
mkdir -p "$DEMO_OUT"
if [ ! -f "$DATA/spai/train.csv" ]; then
  "$PYTHON" -m common_utils.synthetic ai_images --out "$DATA" --seed 0  # the size `make demo` writes
fi
TESTS=()
for csv in "$DATA"/spai/test_*.csv; do TESTS+=(--test-csv "$csv" --test-csv-root-dir "$DATA"); done
for variant in base enhanced; do
  cfg=configs/tiny.yaml
  [ "$variant" = enhanced ] && cfg=configs/tiny_enhanced.yaml
  "$PYTHON" -m spai train --cfg "$cfg" --data-path "$DATA/spai/train.csv" --csv-root-dir "$DATA" \
    --output "$DEMO_OUT/$variant" "${TESTS[@]}" 2> "$DEMO_OUT/$variant.log"
done
"$PYTHON" script/demo_summary.py "$DEMO_OUT"
