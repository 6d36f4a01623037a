"""Cost per frame of each stage, in FLOPs and in time.

Stage 1: FLOPs counted on the model (``FlopCounterMode``) and time measured at ``eval.batch_size`` on the config's
``device`` (or ``cascade.stage1_ms``). Stage 2: ``cascade.stage2_gflops`` / ``cascade.stage2_ms``, else the costs
its score CSV declares (``cost_gflops`` / ``cost_ms``); a unit with no stage-2 cost is left out.
"""
from __future__ import annotations

from .config import local_context, resolve_path
from .scores import read_score_csv
from .stage1.model import eval_size, measure_gflops, measure_ms_per_image


def stage1_costs(cfg, model) -> dict:
    """{"gflops": C1, "ms": C1} of the fast filter per frame, at the size it evaluates at."""
    ms, size = cfg.cascade.stage1_ms, eval_size(cfg.model)
    if ms is None:
        device = local_context(cfg.device).device
        ms = measure_ms_per_image(model, size, cfg.eval.batch_size, device)["ms_per_image"]
    return {"gflops": measure_gflops(model, size), "ms": float(ms)}


def stage2_costs(cfg, declared: dict | None = None) -> dict:
    """{"gflops": C2 or None, "ms": C2 or None}: the config's values, else those the stage-2 CSV declares."""
    if declared is None and cfg.cascade.stage2_scores:
        declared = read_score_csv(resolve_path(cfg.cascade.stage2_scores, "."), cfg.data.root)[1]
    declared = declared or {}
    given = {"gflops": cfg.cascade.stage2_gflops, "ms": cfg.cascade.stage2_ms}
    return {unit: float(given[unit]) if given[unit] is not None else declared.get(unit) for unit in given}


def pair(c1: dict, c2: dict) -> dict:
    """{unit: (C1, C2)} for the units both stages have."""
    return {unit: (c1[unit], c2[unit]) for unit in c1 if c2.get(unit) is not None}


def measure_side_by_side(models: dict, batch_size: int, device="cpu", rounds: int = 3, repeats: int = 3) -> dict:
    """{name: ms per image} of several models measured in alternation (``rounds`` x ``repeats`` batches each, median
    of the rounds), so that load on a shared machine affects every model alike. ``models``: {name: (model, size)}."""
    per_round = {name: [] for name in models}
    for _ in range(rounds):
        for name, (model, size) in models.items():
            per_round[name].append(measure_ms_per_image(model, size, batch_size, device, repeats=repeats,
                                                        warmup=1)["ms_per_image"])
    return {name: float(sorted(v)[len(v) // 2]) for name, v in per_round.items()}
