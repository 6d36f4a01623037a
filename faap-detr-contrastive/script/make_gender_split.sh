#!/usr/bin/env bash
# Gender-split COCO (train / val / test) from COCO's own annotation files, as distributed.
# Usage: script/make_gender_split.sh COCO_ROOT [OUT_DIR=data/gender_coco] [YEAR=2017] [make-gender-split options]
# COCO_ROOT holds annotations/{captions,instances}_{train,val}YEAR.json and {train,val}YEAR/ images. Train comes from
# the train file; val and test are carved (deterministically) from the val file, which the official DETR never saw
# for YEAR=2017. Counts per split and gender are printed and written to OUT_DIR/split_counts.json.
set -euo pipefail
cd "$(dirname "$0")/.."
COCO=${1:?usage: make_gender_split.sh COCO_ROOT [OUT_DIR] [YEAR] [options]}
OUT=${2:-data/gender_coco}
YEAR=${3:-2017}
shift $(( $# < 3 ? $# : 3 ))
exec "${PYTHON:-python}" -m faap_detr make-gender-split --coco-root "$COCO" --out "$OUT" --year "$YEAR" "$@"
