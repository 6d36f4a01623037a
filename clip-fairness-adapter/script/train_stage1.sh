#!/usr/bin/env bash
# Stage 1 bias adapter. Usage: script/train_stage1.sh [config.yaml] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-config/train_stage1.yaml}; shift || true
exec ${PYTHON:-python} -m clip_fairness_adapter train_stage1 --config "$CONFIG" --resume auto "$@"
