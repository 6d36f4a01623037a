#!/usr/bin/env bash
# Train on a SPAI CSV: script/train_spai.sh DATA_ROOT [RUN_DIR] [extra args, e.g. --opt TRAIN.EPOCHS 5]
# (CONFIG=configs/spai.yaml by default; single process, or under torchrun).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=$1; RUN_DIR=${2:-runs/spai}; shift $(( $# < 2 ? $# : 2 ))
exec ${PYTHON:-python} -m spai train --cfg "${CONFIG:-configs/spai.yaml}" --output "$RUN_DIR" --resume auto \
  --data-path "$DATA_ROOT/spai/train.csv" --csv-root-dir "$DATA_ROOT" "$@"
