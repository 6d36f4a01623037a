#!/usr/bin/env bash
# Score a folder of images or a CSV: script/infer_spai.sh INPUT [OUT] [MODEL] -> OUT/<input name>.csv
set -euo pipefail
cd "$(dirname "$0")/.."
exec ${PYTHON:-python} -m spai infer --input "$1" --output "${2:-output}" --model "${3:-weights/spai.pth}"
