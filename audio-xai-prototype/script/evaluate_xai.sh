#!/usr/bin/env bash
# python -m audio_xai evaluate-xai with CONFIG (default configs/xai_stage2.yaml); extra args are key=value overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m audio_xai evaluate-xai --config "${CONFIG:-configs/xai_stage2.yaml}" ${DATA_ROOT:+data.root=$DATA_ROOT} "$@"
