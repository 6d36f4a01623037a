"""Stage 1 training: pairwise + subgroup-vs-batch Sinkhorn and feature preservation on the adapted CLIP feature."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from common_utils.train import (
    MetricLogger,
    all_reduce_mean,
    autocast_context,
    check_finite,
    cleanup_distributed,
    load_state_dict_strict,
    make_grad_scaler,
    prepare_run_dir,
    progress,
    resolve_resume,
)
from torch.nn.parallel import DistributedDataParallel

from ..losses import BatchedSinkhorn, Stage1Loss
from ..model import FairnessAdapter
from . import common

log = logging.getLogger(__name__)


def build_loss(cfg) -> Stage1Loss:
    ls = cfg.loss
    sk = BatchedSinkhorn(ls.sinkhorn_blur, 2, ls.sinkhorn_scaling, ls.diameter)
    return Stage1Loss(sk, ls.w_pairwise, ls.w_global, ls.w_preserve, ls.num_subgroups, ls.min_samples_per_subgroup,
                      ls.truncate, ls.reference)


@torch.no_grad()
def validate(model, loss_fn, loader, device) -> dict:
    """Stage 1 losses averaged over validation batches, plus the mean cosine between adapted and CLIP features."""
    model.eval()
    sums, n = {}, 0
    for batch in loader:
        out = model(common.to_device(batch, device))
        out = {k: v.float() for k, v in out.items()}
        losses = loss_fn(out, batch["subgroup"].to(device))
        losses["cosine_sim"] = F.cosine_similarity(out["final_features_norm"], out["clip_features"], dim=-1).mean()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())  # geomloss re-enables grad internally
        n += 1
    return {k: v / n for k, v in sums.items()}


def train(cfg, resume: str | None = None) -> Path:
    """Train the Stage 1 adapter; ``last.pth``/``best.pth`` hold ``model_state_dict`` with ``additive_adapter.*``."""
    ctx = common.setup(cfg)
    run_dir = prepare_run_dir(cfg.run_dir, cfg, ctx.is_main)
    encoder = common.build_encoder(cfg, ctx)
    model = FairnessAdapter(encoder, 768, cfg.model.hidden_dim, cfg.model.dropout).to(ctx.device)
    loss_fn = build_loss(cfg)
    train_ds = common.build_split(cfg, cfg.data.train_csvs, encoder, ctx)
    val_ds = common.build_split(cfg, cfg.data.val_csvs, encoder, ctx)
    loader, sampler = common.train_loader(train_ds, cfg, ctx, [r.subgroup for r in train_ds.rows])
    val_loader = common.eval_loader(val_ds, cfg)

    t = cfg.train
    params = list(model.additive_adapter.parameters())
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs, eta_min=t.eta_min)
    scaler = make_grad_scaler(cfg.precision, ctx.device)
    start_epoch, best = 0, float("inf")
    resume_path = resolve_resume(resume, run_dir / "last.pth")
    if resume_path is not None:
        ckpt = common.load_resume(resume_path, optimizer, scheduler, scaler)
        state = {k[len("additive_adapter."):]: v for k, v in ckpt["model_state_dict"].items()}
        load_state_dict_strict(model.additive_adapter, state, str(resume_path))
        start_epoch, best = ckpt["epoch"], ckpt["best_val_loss"]

    net = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None) \
        if ctx.distributed else model
    if t.compile:
        net = torch.compile(net)
    logger = MetricLogger(run_dir, ctx.is_main)
    for epoch in range(start_epoch, t.epochs):
        sampler.set_epoch(epoch)
        net.train()
        sums, steps = {}, 0
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(progress(loader, desc=f"stage1 epoch {epoch}", enabled=ctx.is_main)):
            batch = common.to_device(batch, ctx.device, t.channels_last)
            with autocast_context(ctx.device, cfg.precision):
                out = net(batch)
            losses = loss_fn({k: v.float() for k, v in out.items()}, batch["subgroup"])
            check_finite(losses["loss"], epoch * len(loader) + i)
            scaler.scale(losses["loss"] / t.accum_steps).backward()
            if (i + 1) % t.accum_steps == 0 or i + 1 == len(loader):
                if t.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
            steps += 1
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_stats = {f"train/{k}": float(all_reduce_mean(v / steps)) for k, v in sums.items()}
        val = validate(model, loss_fn, val_loader, ctx.device)
        logger.log(epoch + 1, {**train_stats, "train/lr": lr, **{f"val/{k}": v for k, v in val.items()}})
        is_best = val["loss"] < best
        best = min(best, val["loss"])
        state = common.checkpoint_state(epoch + 1, model.adapter_state_dict(), optimizer, scheduler, scaler, cfg,
                                        best_val_loss=best)
        common.save(state, run_dir, ctx, best=is_best)
    logger.close()
    cleanup_distributed()
    return run_dir
