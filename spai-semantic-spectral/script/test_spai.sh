#!/usr/bin/env bash
# Evaluate a checkpoint on every DATA_ROOT/spai/test_*.csv: script/test_spai.sh MODEL DATA_ROOT [OUT] [extra args]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1; DATA_ROOT=$2; OUT=${3:-output/test}; shift $(( $# < 3 ? $# : 3 ))
TESTS=()
for csv in "$DATA_ROOT"/spai/test_*.csv; do TESTS+=(--test-csv "$csv" --test-csv-root-dir "$DATA_ROOT"); done
exec ${PYTHON:-python} -m spai test --model "$MODEL" --output "$OUT" "${TESTS[@]}" "$@"
