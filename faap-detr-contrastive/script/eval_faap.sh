#!/usr/bin/env bash
# Per-gender COCO AP/AR, baseline vs perturbed, for a generator checkpoint.
# Usage: script/eval_faap.sh CHECKPOINT [--epsilon E] [--all-categories] [key=value ...]
# Env: CONFIG, RUN_DIR, DATA_ROOT, DEVICE, PYTHON as in train_faap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?usage: eval_faap.sh CHECKPOINT [args]}
shift
ARGS=()
[ -n "${RUN_DIR:-}" ] && ARGS+=("run_dir=$RUN_DIR")
[ -n "${DATA_ROOT:-}" ] && ARGS+=("data.root=$DATA_ROOT/gender_coco")
exec "${PYTHON:-python}" -m faap_detr eval --config "${CONFIG:-configs/default.yaml}" --device "${DEVICE:-auto}" \
  --checkpoint "$CKPT" "${ARGS[@]}" "$@"
