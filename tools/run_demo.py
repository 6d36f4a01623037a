"""`make demo`: generate the embedded datasets, run each project's `script/demo.sh`, write `SUMMARY.md`.

Each demo gets ``DATA_ROOT``, ``DEMO_OUT``, ``DEMO_SEED`` and ``PYTHON`` in its environment, uses ``DEMO_SEED`` for
every seed it sets (data it generates itself, model initialisation, training), and ends by writing
``$DEMO_OUT/summary.json`` = ``{"status", "headline": {metric: value}, "figures": [paths relative to DEMO_OUT],
"notes"}`` and ``$DEMO_OUT/criteria.json`` (``shared/CRITERIA.md``; written with ``common_utils.criteria``).

Projects run ``--jobs`` at a time (default: the cores available), each single-threaded (``OMP_NUM_THREADS=1``
unless set), so a 2-core machine runs two demos side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common_utils.criteria import read_criteria
from common_utils.train import available_cores

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("ai_images", "fairness_images", "partial_spoof_audio", "gender_coco")


def _env(**extra) -> dict:
    env = dict(os.environ, **{k: str(v) for k, v in extra.items()})
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    return env


def generate_one(name: str, data_root: Path, seed: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "common_utils.synthetic", name, "--out", str(data_root / name),
                    "--seed", str(seed)], check=True, env=_env(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_project(project: str, data_root: Path, out_root: Path, seed: int) -> dict:
    out = out_root / project
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "criteria.json"):
        (out / stale).unlink(missing_ok=True)
    env = _env(DATA_ROOT=data_root, DEMO_OUT=out, PYTHON=sys.executable, DEMO_SEED=seed)
    start = time.perf_counter()
    with open(out / "demo.log", "w") as log:
        proc = subprocess.run(["bash", "script/demo.sh"], cwd=REPO / project, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    summary_path, criteria_path = out / "summary.json", out / "criteria.json"
    if proc.returncode != 0 or not summary_path.is_file():
        reason = f"exit code {proc.returncode}" if proc.returncode else "no summary.json written"
        return {"status": f"failed ({reason}; see {project}/demo.log)", "headline": {}, "figures": [],
                "criteria": [], "seconds": elapsed}
    summary = json.loads(summary_path.read_text())
    summary["seconds"] = elapsed
    try:
        summary["criteria"] = read_criteria(criteria_path) if criteria_path.is_file() else []
        if not criteria_path.is_file():
            summary["status"] = "failed (no criteria.json written)"
    except ValueError as e:
        summary["criteria"], summary["status"] = [], f"failed (criteria.json: {e})"
    return summary


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def criteria_table(results: dict) -> list[str]:
    lines = ["| project | criterion | target | measured | pass | split | n |", "|---|---|---|---|---|---|---|"]
    for project, res in results.items():
        for c in res.get("criteria", []):
            mark = "yes" if c["pass"] else "**no**"
            lines.append(f"| {project} | {c['criterion']} | `{c['target']}` | {_fmt(c['measured'])} | {mark} | "
                         f"{c.get('split', '')} | {_fmt(c.get('n'))} |")
    return lines


def write_summary(out_root: Path, data_root: Path, seed: int, timings: dict, results: dict) -> Path:
    lines = ["# Demo summary", "",
             f"Every pipeline run end to end on the embedded synthetic data (tiny configs), `DEMO_SEED={seed}`.",
             "The criteria are each design's own success criteria measured on held-out data "
             "(`shared/CRITERIA.md`); `make study` repeats them at seeds 0, 1 and 2.", "",
             "## Design criteria", "", *criteria_table(results), "",
             "## Projects", "", "| project | status | headline metrics | figures | time (s) |", "|---|---|---|---|---|"]
    for project, res in results.items():
        metrics = "<br>".join(f"{k}: {_fmt(v)}" for k, v in res.get("headline", {}).items()) or "-"
        figures = " ".join(f"[{Path(f).stem}]({project}/{f})" for f in res.get("figures", [])) or "-"
        lines.append(f"| {project} | {res.get('status', '?')} | {metrics} | {figures} | {res['seconds']:.0f} |")
    notes = [(p, r["notes"]) for p, r in results.items() if r.get("notes")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- **{p}**: {n}" for p, n in notes]
    lines += ["", "## Datasets", "", "| dataset | location | generated in (s) |", "|---|---|---|"]
    for name in DATASETS:
        rel = os.path.relpath(data_root / name, out_root)
        lines.append(f"| {name} | `{rel}` | {timings.get(name, float('nan')):.1f} |")
    path = out_root / "SUMMARY.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_demo(projects: list[str], data_root: Path, out_root: Path, seed: int, jobs: int) -> dict:
    out_root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        timings = dict(zip(DATASETS, pool.map(lambda n: generate_one(n, data_root, seed), DATASETS)))
        print(f"data (seed {seed}) written to {data_root}", flush=True)

        def one(project: str) -> dict:
            res = run_project(project, data_root, out_root, seed)
            print(f"=== demo {project}: {res['status']} in {res['seconds']:.0f} s", flush=True)
            return res

        results = dict(zip(projects, pool.map(one, projects)))
    path = write_summary(out_root, data_root, seed, timings, results)
    (out_root / "criteria.json").write_text(json.dumps(
        {p: r.get("criteria", []) for p, r in results.items()}, indent=1) + "\n")
    print(f"wrote {path}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("projects", nargs="*", help="project folders with a script/demo.sh")
    parser.add_argument("--data", type=Path, default=REPO / "outputs/data")
    parser.add_argument("--out", type=Path, default=REPO / "outputs/demo")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("DEMO_SEED", "0")),
                        help="every seed of every demo (data and training); default $DEMO_SEED or 0")
    parser.add_argument("--jobs", type=int, default=available_cores(), help="projects run side by side")
    args = parser.parse_args()
    results = run_demo(args.projects, args.data.resolve(), args.out.resolve(), args.seed, max(1, args.jobs))
    return 0 if all(r.get("status") == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
