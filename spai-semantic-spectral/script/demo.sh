#!/usr/bin/env bash
# Demo: MFM pre-training of the ViT on the embedded ai_images reals, then base SPAI vs. SPAI + semantic-spectral
# fusion from the same initialisation on the frozen pre-trained ViT; per-generator test AUC; writes
# $DEMO_OUT/criteria.json and $DEMO_OUT/summary.json (script/demo.py). Env: DEMO_SEED, DEMO_OUT, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread: the same numbers on every rerun
export DEMO_OUT=${DEMO_OUT:-outputs/demo/spai-semantic-spectral}
exec "${PYTHON:-python}" script/demo.py
