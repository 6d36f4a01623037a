"""The project's Sinkhorn fairness loss against upstream's per-pair geomloss loop, timed side by side in one run.

Stage 1 case (the named ratio): a batch of 64 balanced over the 8 subgroups (``--points`` = 8 rows each), 768-d
unit-norm features, all 28 subgroup pairs through ``PairwiseFairnessLoss`` (the project's loss) vs one
``SamplesLoss`` call per pair (upstream's loop). Stage 2 case: the same batch balanced over class x subgroup
(``--points`` / 2 rows per cell), 28 pairs within each class, ``Stage2FairnessLoss`` as the trainer builds it vs the
loop over the 56 pairs. One evaluation = forward + backward to the features. blur, scaling and diameter come from the
paper configs (both sides use the same diameter, so both run the same number of epsilon-scaling steps).

    python bench/bench_sinkhorn.py [--threads 1] [--points 8] [--repeats 3] [--device cpu]

stdout: JSON; ``ratios`` = loop seconds / loss seconds (medians of interleaved repeats after a warm-up).
stderr: progress.
"""
import argparse
import json
import sys
from itertools import combinations
from pathlib import Path

from common_utils.bench import (  # torch-free: the thread count is set before torch loads
    clock,
    medians,
    pin_threads,
)

THREADS = pin_threads()
import torch  # noqa: E402
from clip_fairness_adapter.losses import BatchedSinkhorn, PairwiseFairnessLoss, build_fair_loss  # noqa: E402
from common_utils.train import load_config  # noqa: E402
from geomloss import SamplesLoss  # noqa: E402

torch.set_num_threads(THREADS)
ROOT = Path(__file__).resolve().parents[1]
NUM_SUBGROUPS = 8


def log(msg: str) -> None:
    print(f"[bench_sinkhorn] {msg}", file=sys.stderr, flush=True)


# ---- the two sides ------------------------------------------------------------------------------------------------
def project_pairwise_loss(cfg) -> PairwiseFairnessLoss:
    """The Stage 1 pairwise term as the trainer configures it (the only place that names the loss's constructor)."""
    ls = cfg.loss
    return PairwiseFairnessLoss(BatchedSinkhorn(ls.sinkhorn_blur, 2, ls.sinkhorn_scaling, ls.diameter),
                                ls.num_subgroups, ls.min_samples_per_subgroup, ls.truncate)


def upstream_loop(cfg) -> SamplesLoss:
    ls = cfg.loss
    return SamplesLoss("sinkhorn", p=2, blur=ls.sinkhorn_blur, scaling=ls.sinkhorn_scaling, diameter=ls.diameter,
                       backend="tensorized")


def loop_pairs(sk: SamplesLoss, features: torch.Tensor, subgroups: torch.Tensor) -> torch.Tensor:
    """Upstream's form: one geomloss call per subgroup pair i < j, mean of the terms."""
    groups = [features[subgroups == g] for g in range(NUM_SUBGROUPS)]
    return torch.stack([sk(groups[i], groups[j]) for i, j in combinations(range(NUM_SUBGROUPS), 2)]).mean()


def loop_stage2(sk: SamplesLoss, features, labels, subgroups) -> torch.Tensor:
    """Upstream Stage 2: the pairwise loop within the real and within the fake class, mean over the classes."""
    return torch.stack([loop_pairs(sk, features[labels == c], subgroups[labels == c]) for c in (0, 1)]).mean()


def forward_backward(loss_fn, features: torch.Tensor, *args) -> float:
    x = features.detach().clone().requires_grad_(True)
    out = loss_fn(x, *args)
    value = out[0] if isinstance(out, tuple) else out
    value.backward()
    return float(value.detach())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP / MKL threads (default 1)")
    p.add_argument("--points", type=int, default=8, help="rows per subgroup (Stage 1 batch 64 / 8 subgroups)")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    if a.points < 4 or a.points % 2:
        p.error("--points must be even and >= 4 (Stage 2 splits each subgroup over the two classes)")
    cfg1 = load_config(ROOT / "config/train_stage1.yaml", ROOT / "config/train_stage1.yaml")
    schema2 = ROOT / "config/train_stage2_independent_adapter.yaml"
    cfg2 = load_config(schema2, schema2)

    g = torch.Generator().manual_seed(0)
    n = NUM_SUBGROUPS * a.points
    features = torch.nn.functional.normalize(torch.randn(n, a.dim, generator=g), dim=-1).to(device)
    subgroups = torch.arange(NUM_SUBGROUPS).repeat_interleave(a.points).to(device)
    labels = torch.arange(n, device=device) % 2  # each subgroup split evenly over real / fake
    pairwise, loop1 = project_pairwise_loss(cfg1), upstream_loop(cfg1)
    stage2, loop2 = build_fair_loss(cfg2.loss), upstream_loop(cfg2)

    values = {
        "stage1_loss": forward_backward(pairwise, features, subgroups),
        "stage1_loop": forward_backward(lambda x, s: loop_pairs(loop1, x, s), features, subgroups),
        "stage2_loss": forward_backward(stage2, features, labels, subgroups),
        "stage2_loop": forward_backward(lambda x, y, s: loop_stage2(loop2, x, y, s), features, labels, subgroups),
    }
    log(f"{THREADS} thread(s), {a.device}; Stage 1: 28 pairs of {a.points} points; Stage 2: 56 pairs of "
        f"{a.points // 2}; values {values}")
    sec = medians({
        "stage1_loss": lambda: forward_backward(pairwise, features, subgroups),
        "stage1_loop": lambda: forward_backward(lambda x, s: loop_pairs(loop1, x, s), features, subgroups),
        "stage2_loss": lambda: forward_backward(stage2, features, labels, subgroups),
        "stage2_loop": lambda: forward_backward(lambda x, y, s: loop_stage2(loop2, x, y, s), features, labels,
                                                subgroups),
    }, a.repeats, device, THREADS, log=log)
    ls = cfg1.loss
    print(json.dumps({
        "bench": "clip-fairness-adapter/bench/bench_sinkhorn.py",
        "threads": THREADS, "device": a.device, "torch": torch.__version__, "clock": clock(device, THREADS)[1],
        "repeats": a.repeats, "statistic": "median after 1 warm-up call",
        "setup": {"subgroups": NUM_SUBGROUPS, "points_per_subgroup": a.points, "dim": a.dim,
                  "features": "random unit-norm float32", "blur": ls.sinkhorn_blur, "scaling": ls.sinkhorn_scaling,
                  "diameter": ls.diameter, "stage1_pairs": 28, "stage2_pairs": 56,
                  "stage2_points_per_class_and_subgroup": a.points // 2,
                  "loss": "clip_fairness_adapter.losses.PairwiseFairnessLoss / trainer build_fair_loss "
                          "(Stage2FairnessLoss)",
                  "loop": "geomloss SamplesLoss('sinkhorn', tensorized), one call per pair, same diameter"},
        "seconds": sec,
        "values": values,
        "abs_diff": {"stage1": abs(values["stage1_loss"] - values["stage1_loop"]),
                     "stage2": abs(values["stage2_loss"] - values["stage2_loop"])},
        "ratios": {"sinkhorn_batched_vs_loop": sec["stage1_loop"] / sec["stage1_loss"],
                   "sinkhorn_stage2_batched_vs_loop": sec["stage2_loop"] / sec["stage2_loss"]},
        "ratio_definitions": {"sinkhorn_batched_vs_loop": "loop s / loss s, Stage 1 pairwise (28 pairs); target >= 15 "
                                                          "at 1 thread",
                              "sinkhorn_stage2_batched_vs_loop": "loop s / loss s, Stage 2 (2 x 28 pairs)"},
    }, indent=1))


if __name__ == "__main__":
    main()
