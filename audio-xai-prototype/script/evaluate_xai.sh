#!/usr/bin/env bash
# python -m audio_xai evaluate-xai through script/cli.sh (CONFIG, DATA_ROOT, DATASET, RESUME); extra args: key=value overrides.
exec "$(dirname "$0")/cli.sh" evaluate-xai "$@"
