"""A complete trainer on the engine, small enough to read in a minute: the pattern every project trainer follows.

``python -m common_utils.train.example run_dir=/tmp/toy [train.epochs=3] [--resume auto] [--overwrite]`` fits a
linear classifier on seeded Gaussian blobs. The engine's own tests run it (kill -9 and resume, DDP, AMP), and its
source is the reference for how a trainer uses :class:`OptimStep`, :class:`RunDir` and :class:`TrainState`.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler, TensorDataset

from . import (
    OptimStep,
    RunDir,
    TrainState,
    adamw,
    all_reduce_mean,
    build_loader,
    check_finite_outputs,
    cleanup_distributed,
    init_distributed,
    load_config,
    parse_args_with_overrides,
    seed_everything,
    step_options,
    unwrap_model,
    wrap_model,
)

DEFAULTS = {
    "seed": 0,
    "device": "auto",
    "run_dir": "???",
    "data": {"n": 96, "dim": 8, "num_workers": 0},
    "train": {"epochs": 3, "batch_size": 10, "lr": 0.05, "precision": "fp32", "grad_clip": 1.0, "accum_steps": 2},
}


def blobs(n: int, dim: int, seed: int) -> TensorDataset:
    """Two Gaussian blobs: x [n, dim], y [n] in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, dim, generator=g) + (2.0 * y[:, None] - 1.0)
    return TensorDataset(x, y.float())


def train(cfg, resume=None, overwrite=False) -> dict:
    ctx = init_distributed(cfg.device)
    run = RunDir(cfg.run_dir, ctx, resume=resume, overwrite=overwrite)
    seed_everything(cfg.seed)
    data = blobs(cfg.data.n, cfg.data.dim, cfg.seed)
    sampler = DistributedSampler(data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    loader = build_loader(data, cfg.train.batch_size, ctx, sampler=sampler, num_workers=cfg.data.num_workers)
    run.write_config(cfg)  # config and data validated

    net = torch.nn.Sequential(torch.nn.Linear(cfg.data.dim, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    model = wrap_model(net, ctx)
    optimizer = adamw(net.parameters(), lr=cfg.train.lr)
    step = OptimStep(optimizer, device=ctx.device, model=model, **step_options(cfg.train))
    state = TrainState(models={"model": net}, optimizers={"model": optimizer}, steppers={"model": step})
    run.resume(state)

    for epoch in range(run.start_epoch, cfg.train.epochs):
        sampler.set_epoch(epoch)
        model.train()
        step.begin_epoch(epoch, len(loader))
        loss_sum = torch.zeros(())
        for x, y in loader:
            x, y = x.to(ctx.device), y.to(ctx.device)
            with step.autocast():
                logits = model(x).squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            loss_sum += step(loss)["loss"]
        unwrap_model(model).eval()
        with torch.no_grad():
            val_logits = net(data.tensors[0].to(ctx.device)).squeeze(1)
        check_finite_outputs(val_logits, epoch + 1)
        acc = ((val_logits >= 0).float().cpu() == data.tensors[1]).float().mean()
        run.end_epoch(state, {"train_loss": all_reduce_mean(loss_sum / len(loader)).item(), "acc": acc.item(),
                              "steps": step.optimizer_steps})
    run.close()
    cleanup_distributed()
    return {"history": run.history, "weights": {k: v.detach().cpu() for k, v in net.state_dict().items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common_utils.train.example", description=__doc__)
    parser.add_argument("--resume", default=None, help="'auto' or a last.pth to continue from")
    parser.add_argument("--overwrite", action="store_true", help="delete another run found in run_dir")
    args = parse_args_with_overrides(parser, argv)
    train(load_config(None, DEFAULTS, args.overrides), resume=args.resume, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
