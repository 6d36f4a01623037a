#!/usr/bin/env bash
# Demo on the embedded gender_coco scenes (COCO's own layout: captions + instances):
#   1. make-gender-split builds the gender splits from the captions (the command used on real COCO),
#   2. train-detr trains the tiny DETR until it detects and exports it in the official DETR layout,
#   3. train trains the FAAP generator (score-contrastive v2) against it, loaded through the official loader,
#      choosing the epoch on the validation split,
#   4. eval measures per-gender person AP/AR on the test split, baseline vs perturbed, with bootstrap intervals,
#   5. writes $DEMO_OUT/summary.json and $DEMO_OUT/criteria.json (the design criteria).
# Env: DEMO_SEED (every seed: data if generated here, DETR init and training, generator), DATA_ROOT (holds
# gender_coco/; generated if missing), DEMO_OUT, PYTHON.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python}
SEED=${DEMO_SEED:-0}
DATA_ROOT=${DATA_ROOT:-$HERE/outputs/data}
DEMO_OUT=${DEMO_OUT:-$HERE/outputs/demo/faap-detr-contrastive}
COCO=$DATA_ROOT/gender_coco
SPLIT=$DEMO_OUT/gender_split
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # more threads than free cores thrash on a shared CPU
cd "$HERE"
if [ ! -f "$COCO/annotations/captions_train2017.json" ]; then
  "$PYTHON" -m common_utils.synthetic gender_coco --out "$COCO" --seed "$SEED"
fi
mkdir -p "$DEMO_OUT"
"$PYTHON" -m faap_detr make-gender-split --coco-root "$COCO" --year 2017 --out "$SPLIT"
ARGS=(--config configs/tiny.yaml --device cpu "data.root=$SPLIT" "run_dir=$DEMO_OUT/run" "seed=$SEED")
"$PYTHON" -m faap_detr train-detr "${ARGS[@]}" --overwrite
ARGS+=("detr.checkpoint=$DEMO_OUT/run/detr/detr.pth")
"$PYTHON" -m faap_detr train "${ARGS[@]}" --overwrite
"$PYTHON" -m faap_detr eval "${ARGS[@]}" --out "$DEMO_OUT/eval" > /dev/null
"$PYTHON" - "$DEMO_OUT" <<'PY'
import json, sys
from pathlib import Path
from common_utils.criteria import criterion, write_criteria

out = Path(sys.argv[1])
res = json.loads((out / "eval" / "results.json").read_text())
detr_rows = [json.loads(line) for line in (out / "run" / "detr" / "metrics.jsonl").read_text().splitlines()]
val_ap = detr_rows[-1]["val_AP"]
split_counts = json.loads((out / "gender_split" / "split_counts.json").read_text())["splits"]
n_val = sum(v["images"] for v in split_counts["val"].values())
n_test = sum(res["n_images"].values())
rows = {r["metric"]: r for r in res["table"]["metrics"]}
gap = {g["gap"]: g for g in res["table"]["gaps"]}["AP Gap (M-F)"]
ci = gap["change_ci"]
reduction = None if gap["change_relative"] is None or gap["baseline"] <= 0 else -gap["change_relative"]
note_gap = f"AP gap men-women: baseline {gap['baseline']:.4f}, perturbed {gap['perturbed']:.4f} (test split)"
items = [
    criterion("baseline detector person AP@[.5:.95]", ">= 0.3", val_ap, split="val", n=n_val,
              note="tiny DETR trained on the train split, official-format export, before any perturbation",
              AP_men=detr_rows[-1]["val_AP_men"], AP_women=detr_rows[-1]["val_AP_women"]),
    criterion("AP gap (men - women) relative reduction", ">= 0.15", reduction, split="test", n=n_test,
              note=note_gap if reduction is not None else note_gap + "; no positive baseline gap to reduce",
              gap_baseline=gap["baseline"], gap_perturbed=gap["perturbed"]),
    criterion("AP gap change, upper end of the bootstrap 95% interval", "< 0", ci[1] if ci else None,
              split="test", n=n_test, note=f"interval {ci} over {res['bootstrap']} paired image resamples per gender"
              if ci else "no bootstrap", ci_low=ci[0] if ci else None),
]
for label in ("Male", "Female"):
    r = rows[f"{label} AP"]
    items.append(criterion(f"{label.lower()} AP drop below baseline", "<= 0.005", r["baseline"] - r["perturbed"],
                           split="test", n=res["n_images"]["men" if label == "Male" else "women"],
                           note=f"AP baseline {r['baseline']:.4f}, perturbed {r['perturbed']:.4f}",
                           baseline=r["baseline"], perturbed=r["perturbed"]))
items.append(criterion(f"max |delta| ({res['epsilon_units']} units, added in {res['space']} space)",
                       "<= epsilon", res["delta_linf"], split="test", n=n_test, epsilon=res["epsilon"],
                       note="over every perturbed test image; epsilon of the chosen generator"))
write_criteria(out / "criteria.json", items)
headline = {"val_AP_baseline_detector": val_ap,
            **{f"{r['metric']} {k}": r[k] for r in res["table"]["metrics"] for k in ("baseline", "perturbed")},
            "AP_gap_baseline": gap["baseline"], "AP_gap_perturbed": gap["perturbed"], "AP_gap_change_ci": ci,
            "epsilon": res["epsilon"], "delta_linf": res["delta_linf"]}
status = "ok"
summary = {"status": status, "headline": headline, "figures": ["eval/" + f for f in res["figures"]],
           "notes": f"synthetic gender_coco through make-gender-split; tiny DETR (val AP {val_ap:.3f}); FAAP "
                    f"score-contrastive v2, epsilon {res['epsilon']} {res['epsilon_units']} units in {res['space']} "
                    f"space, chosen on val; test split. Tables: eval/results.md"}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print((out / "eval" / "results.md").read_text())
print("\n".join(f"{c['criterion']}: {c['measured']} (target {c['target']}) pass={c['pass']}" for c in items))
PY
