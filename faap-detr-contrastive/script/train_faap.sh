#!/usr/bin/env bash
# Train the FAAP perturbation generator against the frozen DETR.
# Usage: script/train_faap.sh [--bidirectional] [--method adversarial] [--resume auto] [key=value ...]
# Env: CONFIG (default configs/default.yaml), RUN_DIR, DATA_ROOT (folder holding gender_coco/), DEVICE, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=()
[ -n "${RUN_DIR:-}" ] && ARGS+=("run_dir=$RUN_DIR")
[ -n "${DATA_ROOT:-}" ] && ARGS+=("data.root=$DATA_ROOT/gender_coco")
exec "${PYTHON:-python}" -m faap_detr train --config "${CONFIG:-configs/default.yaml}" --device "${DEVICE:-auto}" \
  "${ARGS[@]}" "$@"
