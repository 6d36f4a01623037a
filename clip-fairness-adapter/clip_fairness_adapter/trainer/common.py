"""Pieces both stages share: data sets (cached CLIP features or images), loaders, batches, gathering predictions."""
from __future__ import annotations

import numpy as np
import torch
from common_utils.data import SubgroupBalancedBatchSampler
from common_utils.train import DistContext, all_gather_cat, build_loader
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler, Subset

from ..dataset import FairnessImageDataset, cached_dataset, clip_transform, read_sets
from ..model import FrozenCLIPImageEncoder


def build_split(cfg, entries, encoder: FrozenCLIPImageEncoder, ctx: DistContext):
    """Dataset of the data-set ``entries`` (``image_lists``): cached CLIP features when ``data.cache_dir`` is set,
    else preprocessed images."""
    column_map = OmegaConf.to_container(cfg.data.column_map) if cfg.data.column_map is not None else None
    rows = read_sets([OmegaConf.to_container(e) for e in entries], cfg.data.root, column_map)
    transform = clip_transform(cfg.clip.image_size)
    if cfg.data.cache_dir is None:
        return FairnessImageDataset(rows, transform)
    return cached_dataset(rows, encoder, transform, cfg.data.cache_dir, cfg.clip.image_size, ctx.device,
                          cfg.eval.batch_size)


def train_loader(ds, cfg, ctx: DistContext, groups: list[int]):
    """Loader + the sampler whose ``set_epoch`` seeds the shuffle from (seed, epoch) (exact resume)."""
    t = cfg.train
    if t.balanced_sampling:
        sampler = SubgroupBalancedBatchSampler(groups, t.batch_size, seed=cfg.seed, rank=ctx.rank,
                                               world_size=ctx.world_size)
        return build_loader(ds, t.batch_size, ctx, batch_sampler=sampler, num_workers=cfg.data.num_workers), sampler
    sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    loader = build_loader(ds, t.batch_size, ctx, sampler=sampler, drop_last=True, num_workers=cfg.data.num_workers)
    return loader, sampler


def eval_loader(ds, cfg, ctx: DistContext, shard: bool = True):
    """The split in order; in a distributed run with ``shard``, this rank's contiguous shard of it (``gather``
    concatenates the shards' outputs back in the original order); ``shard=False``: every rank reads all of it."""
    if shard and ctx.distributed:
        bounds = np.linspace(0, len(ds), ctx.world_size + 1).astype(int)
        ds = Subset(ds, range(bounds[ctx.rank], bounds[ctx.rank + 1]))
    return build_loader(ds, cfg.eval.batch_size, ctx, num_workers=cfg.data.num_workers)


def gather(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[n_rank, ...] shards of every rank concatenated in rank order, on the CPU (identity in one process)."""
    return all_gather_cat(t.to(device)).cpu()


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if channels_last and "image" in out:
        out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
    return out
