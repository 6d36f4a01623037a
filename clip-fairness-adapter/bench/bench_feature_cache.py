"""Stage 2 epoch time with and without the CLIP feature cache (same data, same model), measured in one run.

Prints JSON with both epoch times and their ratio. Usage:
  python bench/bench_feature_cache.py --data-root DIR/fairness_images --stage1 RUN/last.pth [--config ...] [k=v ...]
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from clip_fairness_adapter.losses import build_loss_weighting
from clip_fairness_adapter.trainer import common
from clip_fairness_adapter.trainer.stage2_independent_adapter_trainer import (
    build_fair_loss,
    build_model,
    train_one_epoch,
)
from common_utils.train import load_config, make_grad_scaler

ROOT = Path(__file__).resolve().parents[1]


def epoch_time(cfg) -> float:
    ctx = common.setup(cfg)
    encoder = common.build_encoder(cfg, ctx)
    model = build_model(cfg, encoder).to(ctx.device)
    model.load_stage1_checkpoint(cfg.stage1_checkpoint)
    weighting = build_loss_weighting(cfg.loss_weighting).to(ctx.device)
    ds = common.build_split(cfg, cfg.data.train_csvs, encoder, ctx)  # cache built here (not timed)
    loader, sampler = common.train_loader(ds, cfg, ctx, [r.label * 8 + r.subgroup for r in ds.rows])
    params = [p for p in model.parameters() if p.requires_grad] + list(weighting.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.train.lr)
    sampler.set_epoch(0)
    t = time.perf_counter()
    train_one_epoch(model, weighting, build_fair_loss(cfg), loader, opt, make_grad_scaler(cfg.precision, ctx.device),
                    cfg, ctx, 0)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "config/tiny_stage2.yaml"))
    p.add_argument("--data-root", required=True)
    p.add_argument("--stage1", required=True, help="Stage 1 checkpoint")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"data.root={args.data_root}", f"stage1_checkpoint={args.stage1}", f"run_dir={tmp}/run",
                *args.overrides]
        schema = ROOT / "config/train_stage2_independent_adapter.yaml"
        cached = epoch_time(load_config(args.config, schema, [*base, f"data.cache_dir={tmp}/cache"]))
        uncached = epoch_time(load_config(args.config, schema, [*base, "data.cache_dir=null"]))
    print(json.dumps({"epoch_s_cached": cached, "epoch_s_uncached": uncached, "speedup": uncached / cached}))


if __name__ == "__main__":
    main()
