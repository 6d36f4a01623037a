"""Pieces both trainers share: CLIP + data set-up (cached or not), loaders, batches, checkpoints, resume."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from common_utils.data import SubgroupBalancedBatchSampler
from common_utils.train import (
    DistContext,
    all_gather_cat,
    capture_rng_state,
    init_distributed,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..dataset import FairnessImageDataset, cached_dataset, clip_transform, read_rows
from ..model import FrozenCLIPImageEncoder

log = logging.getLogger(__name__)


def setup(cfg) -> DistContext:
    ctx = init_distributed(cfg.device)
    seed_everything(cfg.seed)
    return ctx


def build_encoder(cfg, ctx: DistContext) -> FrozenCLIPImageEncoder:
    encoder = FrozenCLIPImageEncoder(cfg.clip.name, cfg.clip.pretrained, list(cfg.clip.token_layers))
    if encoder.image_size != cfg.clip.image_size:
        raise ValueError(f"clip.image_size {cfg.clip.image_size} != the model's input size {encoder.image_size}")
    encoder = encoder.to(ctx.device)
    if cfg.train.channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    return encoder


def build_split(cfg, csvs, encoder: FrozenCLIPImageEncoder, ctx: DistContext):
    """Dataset of ``csvs``: cached CLIP features when ``data.cache_dir`` is set, else preprocessed images."""
    column_map = OmegaConf.to_container(cfg.data.column_map) if cfg.data.column_map is not None else None
    rows = read_rows(list(csvs), cfg.data.root, column_map)
    transform = clip_transform(cfg.clip.image_size)
    if cfg.data.cache_dir is None:
        return FairnessImageDataset(rows, transform)
    return cached_dataset(rows, encoder, transform, cfg.data.cache_dir, cfg.clip.image_size, ctx.device,
                          cfg.eval.batch_size)


def train_loader(ds, cfg, ctx: DistContext, groups: list[int]):
    """Loader + the sampler whose ``set_epoch`` seeds the shuffle from (seed, epoch) (exact resume)."""
    if cfg.train.balanced_sampling:
        sampler = SubgroupBalancedBatchSampler(groups, cfg.train.batch_size, seed=cfg.seed, rank=ctx.rank,
                                               world_size=ctx.world_size)
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.data.num_workers)
    else:
        sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                     drop_last=True)
        loader = DataLoader(ds, batch_size=cfg.train.batch_size, sampler=sampler, drop_last=True,
                            num_workers=cfg.data.num_workers)
    return loader, sampler


def eval_loader(ds, cfg, ctx: DistContext | None = None) -> DataLoader:
    """The split in order; with the ``ctx`` of a distributed run, this rank's contiguous shard of it (``gather``
    concatenates the shards' outputs back in the original order). Without ``ctx`` every rank reads all of it."""
    if ctx is not None and ctx.distributed:
        bounds = np.linspace(0, len(ds), ctx.world_size + 1).astype(int)
        ds = Subset(ds, range(bounds[ctx.rank], bounds[ctx.rank + 1]))
    return DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False, num_workers=cfg.data.num_workers)


def gather(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[n_rank, ...] shards of every rank concatenated in rank order, on the CPU (identity in one process)."""
    return all_gather_cat(t.to(device)).cpu()


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if channels_last and "image" in out:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out


def checkpoint_state(epoch: int, model_state: dict, optimizer, scheduler, scaler, cfg, **extra) -> dict:
    """``epoch`` = number of completed epochs; RNG states make ``--resume`` continue exactly."""
    return {"epoch": epoch, "model_state_dict": model_state, "optimizer_state_dict": optimizer.state_dict(),
            "scheduler_state_dict": scheduler.state_dict(), "scaler_state_dict": scaler.state_dict(),
            "rng_state": capture_rng_state(), "config": OmegaConf.to_container(cfg, resolve=True), **extra}


def load_resume(path: Path, optimizer, scheduler, scaler) -> dict:
    """Restore optimizer/scheduler/scaler/RNG from ``path``; returns the checkpoint (model state is the caller's)."""
    ckpt = load_checkpoint(path)
    optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    scheduler.load_state_dict(ckpt["scheduler_state_dict"])
    scaler.load_state_dict(ckpt["scaler_state_dict"])
    restore_rng_state(ckpt["rng_state"])
    log.info("resumed from %s after epoch %d", path, ckpt["epoch"])
    return ckpt


def save(state: dict, run_dir: Path, ctx: DistContext, best: bool = False) -> None:
    if ctx.is_main:
        save_checkpoint(state, run_dir / "last.pth")
        if best:
            save_checkpoint(state, run_dir / "best.pth")
