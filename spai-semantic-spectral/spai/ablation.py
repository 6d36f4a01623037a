"""A fair ablation of the semantic-spectral enhancements (``python -m spai ablate``).

Every row is trained from the same initialisation (the enhancements' modules draw their initial values from a
forked RNG stream, so every tensor base SPAI has starts identical at a seed), with the same loss (the config's
``TRAIN.LOSS``), data, backbone and schedule; only the switches differ:

- ``base``: every enhancement off (base SPAI);
- one row per enhancement alone, at the value the config gives it;
- ``all``: the config as given;
- ``all + design loss``: the design's focal + semantic / frequency consistency loss on top (a separate row, not part
  of the enhancement comparison).

Writes ``<out>/<row>/seed<k>/`` (one training run each; a finished run is reused, an interrupted one resumed),
``ablation.json`` (every run's test metrics) and ``ablation.{md,csv}`` (mean +- std over the seeds per test set,
and the mean-AUC difference to ``base`` paired by seed, with how many seeds it is positive at and whether it is beyond
the seed noise: a two-sided paired t-test at 95 % over the seeds; ``all + design loss`` is also compared to ``all``).
"""
from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

from scipy import stats

from .config import get_config
from .engine import TRAIN_EVAL, train_model
from .tables import mean_std, pm

log = logging.getLogger(__name__)

SWITCHES = {  # row -> config key of the enhancement
    "early fusion": "MODEL.FRE.EARLY_FUSION_LAYERS",
    "frequency-aware attention": "MODEL.FRE.USE_FREQUENCY_AWARE_ATTENTION",
    "adaptive gating": "MODEL.FRE.USE_ADAPTIVE_GATING",
    "hierarchical fusion": "MODEL.FRE.USE_HIERARCHICAL_FUSION",
    "extended statistics": "MODEL.FRE.USE_EXTENDED_STATISTICS",
}
OFF = {"MODEL.FRE.EARLY_FUSION_LAYERS": [], **{k: False for k in list(SWITCHES.values())[1:]}}
# the design document's loss (003, "Advanced Loss Functions" / "Optimized Configuration")
DESIGN_LOSS = ["TRAIN.LOSS", "focal", "TRAIN.FOCAL_ALPHA", 0.25, "TRAIN.FOCAL_GAMMA", 2.0,
               "TRAIN.SEMANTIC_CONSISTENCY_WEIGHT", 0.1, "TRAIN.FREQUENCY_CONSISTENCY_WEIGHT", 0.05]
BASE, ALL, ALL_DESIGN_LOSS = "base", "all", "all + design loss"


def _get(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def row_options(cfg, row: str) -> list:
    """``--opt`` pairs that turn the config into ``row``'s variant."""
    on = {key: _get(cfg, key) for key in SWITCHES.values()}
    if not any(on.values()):
        raise ValueError("the ablation config enables no enhancement: give the enhanced config (e.g. "
                         "configs/tiny_enhanced.yaml), whose switches define the rows")
    if row == BASE:
        values = OFF
    elif row in SWITCHES:
        key = SWITCHES[row]
        if not on[key]:
            raise ValueError(f"row {row!r}: {key} is off in the config")
        values = {**OFF, key: on[key]}
    elif row in (ALL, ALL_DESIGN_LOSS):
        values = on
    else:
        raise ValueError(f"unknown ablation row {row!r}; expected one of {', '.join(all_rows(cfg))}")
    opts = [x for kv in values.items() for x in kv]
    return opts + (DESIGN_LOSS if row == ALL_DESIGN_LOSS else [])


def all_rows(cfg) -> list[str]:
    return [BASE] + [r for r, k in SWITCHES.items() if _get(cfg, k)] + [ALL, ALL_DESIGN_LOSS]


def verdict(deltas: list[float], level: float = 0.95) -> str:
    """``helps`` / ``hurts`` when the paired differences' mean is beyond the seed noise (two-sided one-sample t-test
    of the differences against 0 at ``level``), else ``noise``; fewer than two seeds: ``one seed``."""
    if len(deltas) < 2:
        return "one seed"
    m, s = mean_std(deltas)
    if s == 0.0:
        return "noise" if m == 0.0 else ("helps" if m > 0 else "hurts")
    t = m / (s / len(deltas) ** 0.5)
    if abs(t) <= stats.t.ppf(0.5 + level / 2, len(deltas) - 1):
        return "noise"
    return "helps" if t > 0 else "hurts"


def slug(row: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", row.lower()).strip("_")


def run_ablation(cfg_path, opts, data_path, csv_root, test_csvs, test_csv_roots, seeds, out: Path,
                 rows=None) -> dict:
    """Train every (row, seed); returns ``{row: {seed: {"test": {set: metrics}, "history": [...]}}}`` (and
    ``"train_eval"``, the fit on the training images, with TRAIN.EVAL_TRAIN_IMAGES)."""
    base_cfg = get_config(cfg_path, opts)
    rows = rows or all_rows(base_cfg)
    results = {}
    for row in rows:
        row_opts = row_options(base_cfg, row)
        for seed in seeds:
            run_dir = out / slug(row) / f"seed{seed}"
            done = run_dir / "test_metrics.json"
            if not done.is_file():
                cfg = get_config(cfg_path, list(opts) + row_opts + ["SEED", seed])
                log.info("ablation: %s, seed %d -> %s", row, seed, run_dir)
                train_model(cfg, data_path, csv_root, test_csvs, test_csv_roots, resume="auto", output=run_dir)
            history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            results.setdefault(row, {})[seed] = {"test": json.loads(done.read_text()), "history": history}
            if (run_dir / TRAIN_EVAL).is_file():
                results[row][seed]["train_eval"] = json.loads((run_dir / TRAIN_EVAL).read_text())
    write_ablation(results, out)
    return results


def write_ablation(results: dict, out: Path) -> list[Path]:
    """``ablation.json``, ``ablation.md`` and ``ablation.csv`` (mean +- std over seeds; Δ paired by seed)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = list(results)
    sets = list(next(iter(next(iter(results.values())).values()))["test"])
    seeds = sorted({s for r in rows for s in results[r]})

    def values(row, test_set, metric):
        return [results[row][s]["test"][test_set][metric] for s in sorted(results[row])]

    def mean_auc(row, seed):
        per_set = results[row][seed]["test"]
        return sum(per_set[t]["auc"] for t in sets) / len(sets)

    json_path = out / "ablation.json"
    json_path.write_text(json.dumps({r: {str(s): v for s, v in by_seed.items()} for r, by_seed in results.items()},
                                    indent=1) + "\n")
    header = ["row", *[f"{t} AUC" for t in sets], "mean AUC", "Δ mean AUC vs base", "Δ > 0 at seeds",
              "Δ beyond seed noise?", *[f"{t} AP" for t in sets]]
    md = [f"Mean ± std over seeds {', '.join(map(str, seeds))} (Δ: difference to `base` at the same seed, mean ± std "
          "over seeds; beyond seed noise: two-sided paired t-test of the Δs at 95 %).", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table = []
    for row in rows:
        own = sorted(results[row])
        means = [mean_auc(row, s) for s in own]
        paired = [mean_auc(row, s) - mean_auc(BASE, s) for s in own if BASE in results and s in results[BASE]]
        compared = bool(paired) and row != BASE
        cells = ([pm(values(row, t, "auc")) for t in sets] + [pm(means)]
                 + ([pm(paired), f"{sum(d > 0 for d in paired)}/{len(paired)}", verdict(paired)] if compared
                    else ["-", "-", "-"])
                 + [pm(values(row, t, "ap")) for t in sets])
        md.append(f"| {row} | " + " | ".join(cells) + " |")
        for t in sets:
            for metric in ("auc", "ap"):
                m, s = mean_std(values(row, t, metric))
                table.append([row, t, metric, f"{m:.6f}", f"{s:.6f}", len(own)])
        m, s = mean_std(means)
        table.append([row, "mean", "auc", f"{m:.6f}", f"{s:.6f}", len(own)])
        if compared:
            m, s = mean_std(paired)
            table.append([row, "mean", "delta_auc_vs_base", f"{m:.6f}", f"{s:.6f}", len(paired)])
    if ALL_DESIGN_LOSS in results and ALL in results:  # the design's loss against the same model with the config's
        both = [s for s in sorted(results[ALL_DESIGN_LOSS]) if s in results[ALL]]
        paired = [mean_auc(ALL_DESIGN_LOSS, s) - mean_auc(ALL, s) for s in both]
        if paired:
            md += ["", f"`{ALL_DESIGN_LOSS}` vs `{ALL}` (the design's loss instead of the config's, paired by seed): Δ "
                       f"mean AUC {pm(paired)}, > 0 at {sum(d > 0 for d in paired)}/{len(paired)} seeds, "
                       f"{verdict(paired)}."]
            m, s = mean_std(paired)
            table.append([ALL_DESIGN_LOSS, "mean", "delta_auc_vs_all", f"{m:.6f}", f"{s:.6f}", len(paired)])
    md_path = out / "ablation.md"
    md_path.write_text("\n".join(md) + "\n")
    csv_path = out / "ablation.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["row", "test_set", "metric", "mean", "std", "seeds"])
        w.writerows(table)
    return [json_path, md_path, csv_path]
