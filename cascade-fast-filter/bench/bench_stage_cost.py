"""Cost per frame of each cascade stage, FLOPs and measured time side by side, and the cascade's expected cost.

Stage 1 is the config's fast filter (``model.*``, random weights: cost does not depend on them); stage 2 is one or
more timm models ``name:input_size`` (an ensemble costs the sum of its members), by default EfficientNet-B4 at 380 px,
the backbone of the DFDC-winning detectors. Every model is timed in alternation at the config's ``eval.batch_size``
on its ``device`` (on a CPU at most 8, so that ``make bench`` stays short; ``--batch-size`` sets it), median over
rounds, so load on a shared machine weighs on both stages alike. The expected cost
per frame C1 + (1 - f) x C2 is printed for the filtration rates f of an ``evaluation_report.json`` (``--report``) or
for a grid of f, in GFLOPs and in ms, with its ratio to stage 2 alone.

    python bench/bench_stage_cost.py [--config configs/stage1.yaml] [--stage2 efficientnet_b4:380 ...]
        [--report output/stage1/evaluation_report.json] [--batch-size N] [key=value ...]
"""
from __future__ import annotations

import argparse
import json

import timm
from cascade_fast_filter.config import get_config, local_context
from cascade_fast_filter.costs import measure_side_by_side
from cascade_fast_filter.stage1 import model as fast_filter
from cascade_fast_filter.stage1.model import measure_gflops
from cascade_fast_filter.stage1.thresholds import expected_cost


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None)
    parser.add_argument("--stage2", nargs="+", default=["efficientnet_b4:380"], help="timm name:input_size ...")
    parser.add_argument("--report", default=None, help="evaluation_report.json whose filtration rates to use")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the config's eval.batch_size (at most 8 on a CPU)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = get_config(args.config, [*args.overrides, "model.pretrained=false"])
    device = local_context(cfg.device).device
    batch = args.batch_size or (cfg.eval.batch_size if device.type == "cuda" else min(8, cfg.eval.batch_size))
    models = {"stage 1": (fast_filter.build(cfg.model), fast_filter.eval_size(cfg.model))}
    for spec in args.stage2:
        name, size = spec.rsplit(":", 1)
        models[f"stage 2 {name}@{size}"] = (timm.create_model(name, pretrained=False, num_classes=1), int(size))
    ms = measure_side_by_side(models, batch, device, rounds=args.rounds, repeats=2)
    gflops = {k: measure_gflops(m.to(device), s) for k, (m, s) in models.items()}
    c1 = {"gflops": gflops.pop("stage 1"), "ms": ms.pop("stage 1")}
    c2 = {"gflops": sum(gflops.values()), "ms": sum(ms.values())}
    if args.report:
        rows = json.load(open(args.report))["overall"]["cascade"]
        filtration = {t: r["filtration_rate"] for t, r in rows.items()}
    else:
        filtration = {f"f={f:.1f}": f for f in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)}
    result = {
        "device": str(device), "batch_size": batch, "stage1": {"model": cfg.model.name,
                                                              "size": fast_filter.eval_size(cfg.model), **c1},
        "stage2": {"members": {k: {"gflops": gflops[k], "ms": ms[k]} for k in gflops}, **c2},
        "ratio_c1_c2": {u: c1[u] / c2[u] for u in c1},
        "expected_cost": {k: {u: expected_cost(c1[u], c2[u], f) for u in c1}
                          | {f"ratio_{u}": expected_cost(c1[u], c2[u], f) / c2[u] for u in c1}
                          | {"filtration": f} for k, f in filtration.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
