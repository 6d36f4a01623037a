"""Stage 2 epoch with the CLIP feature cache vs an epoch that runs the frozen CLIP each step, at ViT-L/14 size.

The frozen tower is the paper config's ``ViT-L-14-quickgelu`` at 224 with its token layers, random init (no weights
needed for timing). Measured in this run:
  - the tower's forward cost per image, on ``--images`` random images (preprocessed tensors: decoding and resizing,
    which an uncached epoch also pays, are left out, so the ratio is a lower bound);
  - one cached heads step at the real batch size (64): ``train_one_epoch`` over ``--steps`` batches drawn by the
    project's balanced loader from a ``FeatureCache`` memmap of random features (the trainer's cached data path),
    with the shared fused AdamW (``common_utils.train.adamw``);
  - one AdamW step over the trainable heads (9.4M parameters) in the single-tensor, foreach and fused forms.
The epoch ratio is computed from the parts: (batch x per-image tower s + heads step s) / heads step s. Running the
tower on a whole epoch at this size would take hours on a CPU.

    python bench/bench_feature_cache.py [--threads 1] [--images 2] [--steps 4] [--repeats 3] [--device cpu]

stdout: JSON with ``ratios``; stderr: progress.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common_utils.bench import (  # torch-free: the thread count is set before torch loads
    clock,
    median_seconds,
    pin_threads,
)

THREADS = pin_threads()
import torch  # noqa: E402
from clip_fairness_adapter.__main__ import NULLABLE  # noqa: E402
from clip_fairness_adapter.dataset.fairness_dataset import CachedFeatureDataset  # noqa: E402
from clip_fairness_adapter.losses import build_fair_loss, build_loss_weighting  # noqa: E402
from clip_fairness_adapter.model import build_encoder, build_model  # noqa: E402
from clip_fairness_adapter.trainer import common  # noqa: E402
from clip_fairness_adapter.trainer.stage2_independent_adapter_trainer import (  # noqa: E402
    Stage2Objective,
    train_one_epoch,
)
from common_utils.data import FeatureCache  # noqa: E402
from common_utils.data.image_lists import FairnessRow  # noqa: E402
from common_utils.train import OptimStep, adamw, init_distributed, load_config, step_options  # noqa: E402

torch.set_num_threads(THREADS)
ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config/train_stage2_independent_adapter.yaml"


def log(msg: str) -> None:
    print(f"[bench_feature_cache] {msg}", file=sys.stderr, flush=True)


def cached_loader(cfg, ctx, tmp: Path, n_rows: int, n_tokens: int):
    """The trainer's balanced loader over a ``CachedFeatureDataset`` whose [n_rows, 1+K, 768] features live in a
    ``FeatureCache`` memmap (random values; one dummy file per row for the cache key)."""
    rows, files = [], []
    for i in range(n_rows):
        f = tmp / "files" / f"{i:05d}.png"
        f.parent.mkdir(exist_ok=True)
        f.touch()
        files.append(f)
        subgroup = (i // 2) % 8
        rows.append(FairnessRow(f, i % 2, subgroup // 4, subgroup % 4, subgroup, i + 2))
    feats = FeatureCache(tmp / "cache", "clip-bench", {"random": True}).load_or_build(
        files, lambda paths: torch.randn(len(paths), 1 + n_tokens, 768))
    ds = CachedFeatureDataset(rows, feats)
    return common.train_loader(ds, cfg, ctx, [r.label * cfg.loss.num_subgroups + r.subgroup for r in rows])


def adamw_step_seconds(params, repeats: int, device) -> dict:
    """Seconds per AdamW step over ``params`` (gradients set) for each implementation torch offers here."""
    for p in params:
        p.grad = torch.randn_like(p)
    out = {}
    for name, kw in (("single_tensor", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        try:
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, **kw)
            out[name] = median_seconds(opt.step, repeats, device, THREADS, warmup=2)
        except (RuntimeError, TypeError) as e:  # e.g. no fused kernel for this device / dtype
            out[name] = f"unavailable: {e}"
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP / MKL threads (default 1)")
    p.add_argument("--images", type=int, default=2, help="images per timed tower forward")
    p.add_argument("--steps", type=int, default=4, help="cached heads steps per timed epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = load_config(SCHEMA, SCHEMA, [f"device={a.device}", "clip.pretrained=null", "data.num_workers=0",
                                           f"data.cache_dir={tmp / 'cache'}", f"run_dir={tmp / 'run'}"],
                          nullable=NULLABLE)  # as the CLI reads it (clip.pretrained=null: random init)
        ctx = init_distributed(cfg.device)
        t0 = time.perf_counter()
        encoder = build_encoder(cfg.clip, ctx.device, cfg.train.channels_last)
        log(f"{cfg.clip.name} built in {time.perf_counter() - t0:.1f}s (random init); {THREADS} thread(s)")

        images = torch.rand(a.images, 3, cfg.clip.image_size, cfg.clip.image_size, device=device)
        tower_s = median_seconds(lambda: encoder(images), max(1, a.repeats - 1), device, THREADS) / a.images
        log(f"tower forward: {tower_s:.3f} s/image")

        batch = cfg.train.batch_size
        loader, sampler = cached_loader(cfg, ctx, tmp, batch * a.steps, len(cfg.clip.token_layers))
        model = build_model(cfg, encoder).to(device)
        weighting = build_loss_weighting(cfg.loss_weighting).to(device)
        params = [q for q in model.heads().parameters() if q.requires_grad] + list(weighting.parameters())
        t = cfg.train
        opt = adamw(params, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
        objective = Stage2Objective(model, build_fair_loss(cfg.loss), weighting, cfg.fusion.gate_prior)
        step = OptimStep(opt, device=ctx.device, model=objective, **step_options(t))
        epoch = {"n": 0}

        def cached_epoch():  # the trainer's epoch (its OptimStep, fused AdamW) over the cached loader
            sampler.set_epoch(epoch["n"])
            train_one_epoch(objective, step, loader, cfg, ctx, epoch["n"])
            epoch["n"] += 1

        step_s = median_seconds(cached_epoch, a.repeats, device, THREADS) / len(loader)
        log(f"cached heads step (batch {batch}): {step_s:.3f} s")
        adamw_s = adamw_step_seconds(params, 10, device)
        log(f"AdamW step: {adamw_s}")

    recompute_step = batch * tower_s + step_s
    timed = {k: v for k, v in adamw_s.items() if isinstance(v, float)}
    ratios = {"clip_cache_vs_recompute": recompute_step / step_s}
    ratios.update({f"adamw_{k}_vs_single_tensor": timed["single_tensor"] / v
                   for k, v in timed.items() if k != "single_tensor" and "single_tensor" in timed})
    print(json.dumps({
        "bench": "clip-fairness-adapter/bench/bench_feature_cache.py",
        "threads": THREADS, "device": a.device, "torch": torch.__version__, "clock": clock(device, THREADS)[1],
        "repeats": a.repeats, "statistic": "median after a warm-up call",
        "setup": {"clip": f"{cfg.clip.name} at {cfg.clip.image_size}, token layers {list(cfg.clip.token_layers)}, "
                          "random init", "batch_size": batch, "images_timed": a.images,
                  "cached_steps_per_epoch": len(loader), "fusion_kv": cfg.fusion.kv,
                  "trainable_parameters": sum(q.numel() for q in params), "loader_workers": 0},
        "method": "epoch ratio computed from measured parts: (batch_size x tower s/image + cached heads step s) / "
                  "cached heads step s; the tower runs on preprocessed tensors (image decoding excluded)",
        "seconds": {"tower_per_image": tower_s, "cached_heads_step": step_s, "recompute_step": recompute_step,
                    "adamw_step": adamw_s},
        "ratios": ratios,
        "ratio_definitions": {"clip_cache_vs_recompute": "recompute epoch s / cached epoch s; target >= 50 at ViT-L/14",
                              "adamw_*_vs_single_tensor": "single-tensor AdamW step s / that form's step s, "
                                                          "over the trainable heads"},
    }, indent=1))


if __name__ == "__main__":
    main()
