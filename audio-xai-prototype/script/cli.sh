#!/usr/bin/env bash
# cli.sh COMMAND [ARGS...]: python -m audio_xai COMMAND with CONFIG (default configs/xai_stage2.yaml) and, when set,
# DATA_ROOT = the folder holding the datasets (as in demo.sh) -> data.root=$DATA_ROOT/$DATASET (DATASET default
# partial_spoof_audio; e.g. PartialSpoof/database with data.layout=partialspoof). Training commands resume
# (RESUME, default auto). Extra args: options and key=value overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
COMMAND=$1; shift
ARGS=(--config "${CONFIG:-configs/xai_stage2.yaml}")
case "$COMMAND" in train-*) ARGS+=(--resume "${RESUME:-auto}") ;; esac
if [ -n "${DATA_ROOT:-}" ]; then ARGS+=("data.root=$DATA_ROOT/${DATASET:-partial_spoof_audio}"); fi
exec "$PYTHON" -m audio_xai "$COMMAND" "${ARGS[@]}" "$@"
