#!/usr/bin/env bash
# python -m audio_xai train-stage1 with CONFIG (default configs/xai_stage2.yaml); extra args are key=value overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m audio_xai train-stage1 --config "${CONFIG:-configs/xai_stage2.yaml}" --resume ${RESUME:-auto} ${DATA_ROOT:+data.root=$DATA_ROOT} "$@"
