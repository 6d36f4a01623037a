#!/usr/bin/env bash
# Tiny end-to-end demo on the synthetic partial_spoof_audio set, in one Python process: Stage 1 detector (written as
# avg_5_best.pth) -> Stage 2 XAI module on it (read back through the released-checkpoint loader) -> evaluation with
# the frame probe -> model-randomisation check -> explanations; writes $DEMO_OUT/{criteria,summary}.json.
# Env: DATA_ROOT (the folder holding partial_spoof_audio/, as for script/*.sh; generated with DEMO_SEED if missing),
# DEMO_SEED (every seed: data, initialisation, training; default 0), DEMO_OUT, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DEMO_SEED=${DEMO_SEED:-0}
DATA_ROOT=${DATA_ROOT:-outputs/data}
DEMO_OUT=${DEMO_OUT:-outputs/demo/audio-xai-prototype}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DATA="$DATA_ROOT/partial_spoof_audio"
if [ ! -d "$DATA/LA" ]; then
  "$PYTHON" -m common_utils.synthetic partial_spoof_audio --out "$DATA" --seed "$DEMO_SEED"
fi
rm -rf "$DEMO_OUT/run"
mkdir -p "$DEMO_OUT"
"$PYTHON" -m audio_xai.demo --config configs/tiny.yaml --out "$DEMO_OUT" "data.root=$DATA" "seed=$DEMO_SEED"
