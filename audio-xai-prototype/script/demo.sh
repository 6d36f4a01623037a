#!/usr/bin/env bash
# Tiny end-to-end demo on the synthetic partial_spoof_audio set: Stage 1 detector -> Stage 2 XAI module ->
# explanations -> faithfulness / localisation of the learned importance vs attention rollout and gradient x input.
# Env: DATA_ROOT (holds partial_spoof_audio/; generated if missing), DEMO_OUT, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DATA_ROOT=${DATA_ROOT:-outputs/data}
DEMO_OUT=${DEMO_OUT:-outputs/demo/audio-xai-prototype}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DATA="$DATA_ROOT/partial_spoof_audio"
if [ ! -d "$DATA/LA" ]; then
  "$PYTHON" -m common_utils.synthetic partial_spoof_audio --out "$DATA" --n 120 --seed 0
fi
RUN="$DEMO_OUT/run"
rm -rf "$RUN"
mkdir -p "$RUN"
ARGS=(--config configs/tiny.yaml "data.root=$DATA" "run_dir=$RUN")
"$PYTHON" -m audio_xai train-stage1 "${ARGS[@]}" > "$RUN/stage1_result.json"
"$PYTHON" -m audio_xai train-xai "${ARGS[@]}" > /dev/null
"$PYTHON" -m audio_xai explain "${ARGS[@]}" > /dev/null
"$PYTHON" -m audio_xai evaluate-xai "${ARGS[@]}" > /dev/null
"$PYTHON" - "$DEMO_OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
run = out / "run"
res = json.loads((run / "evaluate" / "results.json").read_text())
stage1 = json.loads((run / "stage1_result.json").read_text())
headline = {"detector_eval_eer": stage1["eval_eer"]}
for m, r in res["methods"].items():
    headline[f"{m}_deletion_auc"] = round(r["deletion_auc"], 4)
    headline[f"{m}_insertion_auc"] = round(r["insertion_auc"], 4)
    headline[f"{m}_frame_auc"] = r["localisation"]["frame_auc"]
    headline[f"{m}_frame_eer"] = r["localisation"]["frame_eer"]
st = res["statistics"]
headline["total_importance_bonafide"] = round(st["bonafide"]["total"]["mean"], 3)
headline["total_importance_spoof"] = round(st["spoof"]["total"]["mean"], 3)
figures = [str(p.relative_to(out)) for p in sorted(run.glob("evaluate/*.png")) + sorted(run.glob("explain/*/figures/*.png"))]
summary = {"status": "ok", "headline": headline, "figures": figures,
           "notes": ("Synthetic partial_spoof_audio (tiny random-init XLS-R-style detector trained here, not the "
                     "released checkpoint). Faithfulness: p_spoof = 1 - p(bona fide) of the frozen detector as the "
                     "top frames of each map are deleted / inserted, with the "
                     f"'{res['deletion_baseline']}' deletion baseline (lower deletion / higher insertion AUC = more "
                     "faithful); localisation = frame AUC/EER of each map against the 20 ms spoof labels of the "
                     f"{res['split']} spoof utterances. Not research results.")}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
