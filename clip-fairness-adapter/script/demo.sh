#!/usr/bin/env bash
# Demo on the embedded fairness_images data: pre-train a small open_clip model on the captioned images (the stand-in
# for CLIP's web pre-training) -> Stage 1 on the demographic-only face sets (FairFace, UTKFace, CausalFace layouts) ->
# Stage 2 on the PG-FDD frames -> evaluation (Stage 2 vs a linear probe on the same frozen CLIP features) ->
# $DEMO_OUT/summary.json and $DEMO_OUT/criteria.json (the design's 검증 방법, script/demo_criteria.py).
# DEMO_SEED sets every seed (data, CLIP pre-training, both stages); DATA_ROOT holds the data generated with it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
SEED=${DEMO_SEED:-0}
DATA_ROOT=$(realpath -m "${DATA_ROOT:-outputs/data}")
DEMO_OUT=$(realpath -m "${DEMO_OUT:-outputs/demo/clip-fairness-adapter}")
FI="$DATA_ROOT/fairness_images"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # small models: more threads only add contention
if ! "$PYTHON" -c "import json,sys; sys.exit(json.load(open('$FI/synthetic_info.json'))['seed'] != $SEED)" 2>/dev/null
then
  "$PYTHON" -m common_utils.synthetic fairness_images --out "$FI" --seed "$SEED"
fi
RUN=("seed=$SEED" "device=cpu" "--overwrite")
"$PYTHON" -m clip_fairness_adapter pretrain_clip --config config/pretrain_clip.yaml run_dir="$DEMO_OUT/clip" \
  data.root="$FI" "${RUN[@]}"
COMMON=(data.root="$FI" data.cache_dir="$DEMO_OUT/cache" clip.name="local-dir:$DEMO_OUT/clip/open_clip"
        clip.model_config=null)
"$PYTHON" -m clip_fairness_adapter train_stage1 --config config/tiny_stage1.yaml run_dir="$DEMO_OUT/stage1" \
  "${COMMON[@]}" "${RUN[@]}"
"$PYTHON" -m clip_fairness_adapter train_stage2 --config config/tiny_stage2.yaml run_dir="$DEMO_OUT/stage2" \
  stage1_checkpoint="$DEMO_OUT/stage1/best.pth" "${COMMON[@]}" "${RUN[@]}"
"$PYTHON" script/demo_criteria.py --config config/tiny_stage2.yaml --out "$DEMO_OUT" run_dir="$DEMO_OUT/stage2" \
  stage1_checkpoint="$DEMO_OUT/stage1/best.pth" "${COMMON[@]}" "seed=$SEED" device=cpu
