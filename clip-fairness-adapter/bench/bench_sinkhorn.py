"""Batched (one padded geomloss call) vs looped (one call per pair) Sinkhorn over the 28 pairs of 8 subgroups.

Prints JSON: seconds per evaluation (forward + backward) for both and their ratio, plus the max difference.
Usage: python bench/bench_sinkhorn.py [--n-min 4 --n-max 12 --dim 768 --repeats 5]
"""
import argparse
import json
import time

import torch
from clip_fairness_adapter.losses import BatchedSinkhorn
from geomloss import SamplesLoss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n-min", type=int, default=4)
    p.add_argument("--n-max", type=int, default=12)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(args.n_min, args.n_max + 1, (8,), generator=g).tolist()
    groups = [torch.nn.functional.normalize(torch.randn(n, args.dim, generator=g), dim=-1).to(args.device)
              for n in sizes]
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    batched = BatchedSinkhorn(blur=1e-4, diameter=2.0)
    looped = SamplesLoss("sinkhorn", p=2, blur=1e-4, scaling=0.9, diameter=2.0, backend="tensorized")

    def run_batched():
        xs = [groups[i].clone().requires_grad_(True) for i, _ in pairs]
        out = batched(xs, [groups[j] for _, j in pairs])
        out.sum().backward()
        return out.detach()

    def run_looped():
        out = []
        for i, j in pairs:
            x = groups[i].clone().requires_grad_(True)
            v = looped(x, groups[j])
            v.backward()
            out.append(v.detach())
        return torch.stack(out)

    def timed(fn):
        fn()  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.repeats):
            res = fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / args.repeats, res

    t_b, v_b = timed(run_batched)
    t_l, v_l = timed(run_looped)
    print(json.dumps({"pairs": len(pairs), "group_sizes": sizes, "dim": args.dim, "device": args.device,
                      "batched_s": t_b, "looped_s": t_l, "speedup_looped_over_batched": t_l / t_b,
                      "max_abs_diff": float((v_b - v_l).abs().max())}))


if __name__ == "__main__":
    main()
