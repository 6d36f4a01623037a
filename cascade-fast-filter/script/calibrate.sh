#!/usr/bin/env bash
# python -m cascade_fast_filter calibrate with CONFIG / RUN_DIR / DATA_ROOT from the environment; extra args are
# forwarded (dotted key=value overrides or flags).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
CONFIG=${CONFIG:-$HERE/configs/stage1.yaml}
ARGS=(--config "$CONFIG")
[ -n "${RUN_DIR:-}" ] && ARGS+=("run_dir=$RUN_DIR")
[ -n "${DATA_ROOT:-}" ] && ARGS+=("data.root=$DATA_ROOT")
exec "$PYTHON" -m cascade_fast_filter calibrate "${ARGS[@]}" "$@"
