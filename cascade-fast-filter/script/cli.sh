#!/usr/bin/env bash
# cli.sh COMMAND [ARGS...]: python -m cascade_fast_filter COMMAND with CONFIG / RUN_DIR / DATA_ROOT / PYTHON from the
# environment; ARGS are forwarded (dotted key=value overrides or flags, e.g. --resume auto).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
COMMAND=$1
shift
ARGS=(--config "${CONFIG:-$HERE/configs/stage1.yaml}")
[ -n "${RUN_DIR:-}" ] && ARGS+=("run_dir=$RUN_DIR")
[ -n "${DATA_ROOT:-}" ] && ARGS+=("data.root=$DATA_ROOT")
exec "${PYTHON:-python}" -m cascade_fast_filter "$COMMAND" "${ARGS[@]}" "$@"
