#!/usr/bin/env bash
# Evaluate a Stage 2 run on data.test_sets. Usage: script/eval.sh [config.yaml] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-config/train_stage2_independent_adapter.yaml}; shift || true
exec ${PYTHON:-python} -m clip_fairness_adapter eval --config "$CONFIG" "$@"
