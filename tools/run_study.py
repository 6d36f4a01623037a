"""`make study`: every project's demo at seeds 0, 1 and 2, then `outputs/study/STUDY.md`.

For each criterion (project, name) STUDY.md gives its target, the value at each seed, mean and standard deviation
over seeds (sample std, ddof=1) and how many seeds pass. A claim holds when it passes at every seed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from common_utils.train import available_cores
from run_demo import REPO, run_demo


def aggregate(per_seed: dict[int, dict]) -> list[dict]:
    """Rows ``{project, criterion, target, values: {seed: measured}, passes: {seed: bool}, mean, std}``."""
    rows: dict[tuple[str, str], dict] = {}
    for seed, results in per_seed.items():
        for project, res in results.items():
            for c in res.get("criteria", []):
                row = rows.setdefault((project, c["criterion"]), {
                    "project": project, "criterion": c["criterion"], "target": c["target"], "values": {},
                    "passes": {}})
                row["values"][seed], row["passes"][seed] = c["measured"], c["pass"]
    for row in rows.values():
        vals = [v for v in row["values"].values() if v is not None]
        row["mean"] = statistics.fmean(vals) if vals else None
        row["std"] = statistics.stdev(vals) if len(vals) > 1 else None
    return list(rows.values())


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def write_study(out: Path, seeds: list[int], per_seed: dict[int, dict]) -> Path:
    rows = aggregate(per_seed)
    head = "| project | criterion | target | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std | passes |"
    lines = ["# Study: design criteria over seeds", "",
             f"`make study`: each project's demo at seeds {', '.join(map(str, seeds))} (`DEMO_SEED` changes every "
             "seed: data generation and training). A claim holds when it passes at every seed; a difference within "
             "the seed-to-seed spread (std) is noise.", "", head,
             "|" + "---|" * (len(seeds) + 6)]
    for r in rows:
        vals = " | ".join(
            (_fmt(r["values"].get(s)) + ("" if r["passes"].get(s) else " ✗")) if s in r["values"] else "-"
            for s in seeds)
        n_pass = sum(bool(r["passes"].get(s)) for s in seeds)
        lines.append(f"| {r['project']} | {r['criterion']} | `{r['target']}` | {vals} | {_fmt(r['mean'])} | "
                     f"{_fmt(r['std'])} | {n_pass}/{len(seeds)} |")
    status = [f"- seed {s}: " + ", ".join(f"{p} {res.get('status')}" for p, res in per_seed[s].items())
              for s in seeds]
    lines += ["", "## Demo status per seed", "", *status]
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(rows, indent=1) + "\n")
    path = out / "STUDY.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("projects", nargs="*", help="project folders with a script/demo.sh")
    parser.add_argument("--out", type=Path, default=REPO / "outputs/study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=available_cores())
    args = parser.parse_args()
    out = args.out.resolve()
    per_seed = {}
    for seed in args.seeds:
        print(f"##### seed {seed}", flush=True)
        per_seed[seed] = run_demo(args.projects, out / f"data_seed{seed}", out / f"seed{seed}", seed,
                                  max(1, args.jobs))
    print(f"wrote {write_study(out, args.seeds, per_seed)}")
    ok = all(r.get("status") == "ok" for res in per_seed.values() for r in res.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
