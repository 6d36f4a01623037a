"""CLI: ``python -m common_utils.synthetic <name>|all --out DIR [--n N] [--seed S]``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import DATASETS, DEMO_SIZES, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common_utils.synthetic", description=__doc__)
    parser.add_argument("name", choices=[*DATASETS, "all"], help="dataset to write; 'all' writes each under OUT/<name>")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--n", type=int, default=None,
                        help="dataset size: real images (plus as many fakes) for ai_images, images in the PG-FDD CSVs "
                        "for fairness_images, utterances for partial_spoof_audio, images for gender_coco "
                        f"(default: the demo size, {DEMO_SIZES}); not allowed with 'all'")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.name == "all" and args.n is not None:
        parser.error("--n cannot be used with 'all' (each dataset is written at its demo size)")
    jobs = [(name, args.out / name) for name in DATASETS] if args.name == "all" else [(args.name, args.out)]
    for name, out in jobs:
        start = time.perf_counter()
        try:
            info = generate(name, out, n=args.n, seed=args.seed)
        except ValueError as e:
            parser.error(str(e))
        print(json.dumps({"dataset": name, "out": str(out), "n": info["n"], "seed": args.seed,
                          "counts": info["counts"], "seconds": round(time.perf_counter() - start, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
