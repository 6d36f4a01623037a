#!/usr/bin/env bash
# Stage 2 dual adapter. Usage: script/train_stage2.sh [config.yaml] [key=value ...]  (needs stage1_checkpoint)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-config/train_stage2_independent_adapter.yaml}; shift || true
exec ${PYTHON:-python} -m clip_fairness_adapter train_stage2 --config "$CONFIG" --resume auto "$@"
