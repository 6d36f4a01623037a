"""Result tables: per-test-set metrics (JSON, Markdown, CSV) and the ablation's mean +- std over seeds."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

METRICS = ("auc", "ap", "acc")


def _fmt(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_test_tables(results: dict, out_dir: Path, stem: str = "test_metrics") -> list[Path]:
    """``{test set: {auc, ap, acc, n_real, n_fake, single_class, ...}}`` -> ``<stem>.json``, ``.md``, ``.csv``.

    Single-class sets (AUC/AP undefined) show ``n/a``. The Markdown table ends with the mean over the sets that
    have both classes.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(results)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    csv_path = out_dir / f"{stem}.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["test_set", *METRICS, "n_real", "n_fake"])
        for name in names:
            r = results[name]
            w.writerow([name, *("" if r[k] is None else f"{r[k]:.6f}" for k in METRICS), r["n_real"], r["n_fake"]])
    lines = ["| test set | AUC | AP | accuracy | real | fake |", "|---|---|---|---|---|---|"]
    for name in names:
        r = results[name]
        lines.append(f"| {name} | {' | '.join(_fmt(r[k]) for k in METRICS)} | {r['n_real']} | {r['n_fake']} |")
    both = [results[n] for n in names if not results[n]["single_class"]]
    if len(both) > 1:
        means = [sum(r[k] for r in both) / len(both) for k in METRICS]
        lines.append(f"| **mean** | {' | '.join(_fmt(v) for v in means)} | | |")
    md_path = out_dir / f"{stem}.md"
    md_path.write_text("\n".join(lines) + "\n")
    return [json_path, md_path, csv_path]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    m = sum(values) / len(values)
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0)


def pm(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{m:.3f} ± {s:.3f}"
