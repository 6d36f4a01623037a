#!/usr/bin/env bash
# Gender-split COCO JSONs from COCO captions, for train and val.
# Usage: script/make_gender_split.sh COCO_ROOT OUT_DIR [YEAR=2014]
# COCO_ROOT holds annotations/{captions,instances}_{train,val}YEAR.json and {train,val}YEAR/ images.
set -euo pipefail
cd "$(dirname "$0")/.."
COCO=${1:?usage: make_gender_split.sh COCO_ROOT OUT_DIR [YEAR]}
OUT=${2:?usage: make_gender_split.sh COCO_ROOT OUT_DIR [YEAR]}
YEAR=${3:-2014}
for SPLIT in train val; do
  "${PYTHON:-python}" -m faap_detr make-gender-split --captions "$COCO/annotations/captions_${SPLIT}${YEAR}.json" \
    --instances "$COCO/annotations/instances_${SPLIT}${YEAR}.json" --image-dir "$COCO/${SPLIT}${YEAR}" \
    --out "$OUT" --split "$SPLIT"
done
