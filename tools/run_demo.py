"""`make demo`: generate the embedded datasets, run each project's `script/demo.sh`, write `SUMMARY.md`.

Each demo gets ``DATA_ROOT``, ``DEMO_OUT`` and ``PYTHON`` in its environment and ends by writing
``$DEMO_OUT/summary.json`` = ``{"status", "headline": {metric: value}, "figures": [paths relative to DEMO_OUT],
"notes"}``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("ai_images", "fairness_images", "partial_spoof_audio", "gender_coco")


def generate_data(data_root: Path) -> dict[str, float]:
    timings = {}
    for name in DATASETS:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "common_utils.synthetic", name, "--out", str(data_root / name)],
                       check=True)
        timings[name] = time.perf_counter() - start
    return timings


def run_project(project: str, data_root: Path, out_root: Path) -> dict:
    out = out_root / project
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DATA_ROOT=str(data_root), DEMO_OUT=str(out), PYTHON=sys.executable)
    start = time.perf_counter()
    with open(out / "demo.log", "w") as log:
        proc = subprocess.run(["bash", "script/demo.sh"], cwd=REPO / project, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    summary_path = out / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        reason = f"exit code {proc.returncode}" if proc.returncode else "no summary.json written"
        return {"status": f"failed ({reason}; see {project}/demo.log)", "headline": {}, "figures": [],
                "seconds": elapsed}
    summary = json.loads(summary_path.read_text())
    summary["seconds"] = elapsed
    return summary


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "n/a" if value is None else str(value)


def write_summary(out_root: Path, data_root: Path, timings: dict, results: dict) -> Path:
    lines = ["# Demo summary", "",
             "Every pipeline run end to end on the embedded synthetic data (tiny configs, random init).",
             "Numbers show that the code learns; they are not research results.", "",
             "## Datasets", "", "| dataset | location | generated in (s) |", "|---|---|---|"]
    for name in DATASETS:
        rel = os.path.relpath(data_root / name, out_root)
        lines.append(f"| {name} | `{rel}` | {timings.get(name, float('nan')):.1f} |")
    lines += ["", "## Projects", "", "| project | status | headline metrics | figures | time (s) |",
              "|---|---|---|---|---|"]
    for project, res in results.items():
        metrics = "<br>".join(f"{k}: {_fmt(v)}" for k, v in res.get("headline", {}).items()) or "-"
        figures = " ".join(f"[{Path(f).stem}]({project}/{f})" for f in res.get("figures", [])) or "-"
        lines.append(f"| {project} | {res.get('status', '?')} | {metrics} | {figures} | {res['seconds']:.0f} |")
    notes = [(p, r["notes"]) for p, r in results.items() if r.get("notes")]
    if notes:
        lines += ["", "## Notes", ""] + [f"- **{p}**: {n}" for p, n in notes]
    path = out_root / "SUMMARY.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("projects", nargs="*", help="project folders with a script/demo.sh")
    parser.add_argument("--data", type=Path, default=REPO / "outputs/data")
    parser.add_argument("--out", type=Path, default=REPO / "outputs/demo")
    args = parser.parse_args()
    data_root, out_root = args.data.resolve(), args.out.resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    timings = generate_data(data_root)
    results = {}
    for project in args.projects:
        print(f"=== demo {project}", flush=True)
        results[project] = run_project(project, data_root, out_root)
        print(f"    {results[project]['status']} in {results[project]['seconds']:.0f} s", flush=True)
    path = write_summary(out_root, data_root, timings, results)
    print(f"wrote {path}")
    return 0 if all(r.get("status") == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
