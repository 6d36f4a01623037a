"""Collect the demo's per-generator test metrics into summary.json, a bar chart and ROC curves."""
import csv
import json
import sys
from pathlib import Path

from common_utils.plots import plot_group_bars, plot_roc

out = Path(sys.argv[1])
variants = {"base SPAI": "base", "SPAI + semantic-spectral": "enhanced"}
results = {name: json.loads((out / d / "test_metrics.json").read_text()) for name, d in variants.items()}
auc = {name: {k.removeprefix("test_"): m["auc"] for k, m in r.items()} for name, r in results.items()}
headline = {f"{d}_auc_{gen}": round(v, 4) for name, d in variants.items() for gen, v in auc[name].items()}
for name, d in variants.items():
    vals = [v for v in auc[name].values() if v is not None]
    headline[f"{d}_mean_auc"] = round(sum(vals) / len(vals), 4)

figures = [plot_group_bars(auc, out / "auc_per_generator.png", title="Test AUC per generator (synthetic data)",
                           ylabel="AUC")]
curves = {}
for d in variants.values():
    for f in sorted((out / d).glob("scores_test_*.csv")):
        rows = list(csv.DictReader(open(f)))
        curves[f"{d} {f.stem.removeprefix('scores_test_')}"] = ([int(r["class"]) for r in rows],
                                                                 [float(r["spai"]) for r in rows])
figures.append(plot_roc(curves, out / "roc.png", title="ROC per generator (synthetic data)"))
summary = {"status": "ok", "headline": headline, "figures": [str(Path(f).relative_to(out)) for f in figures],
           "notes": "tiny random-init SPAI (base) vs. with every semantic-spectral enhancement (tiny random-init "
                    "open_clip tower), trained a few epochs on synthetic ai_images; each test CSV = real test "
                    "images + one generator's fakes, scored together. Synthetic data: shows the pipeline "
                    "learns, not research claims."}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary["headline"], indent=2))
