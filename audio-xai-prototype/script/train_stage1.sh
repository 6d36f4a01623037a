#!/usr/bin/env bash
# python -m audio_xai train-stage1 through script/cli.sh (CONFIG, DATA_ROOT, DATASET, RESUME); extra args: key=value overrides.
exec "$(dirname "$0")/cli.sh" train-stage1 "$@"
