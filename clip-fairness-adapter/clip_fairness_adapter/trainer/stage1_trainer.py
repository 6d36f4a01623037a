"""Stage 1 training: the additive adapter on demographic-only face data (pairwise + subgroup-vs-batch Sinkhorn +
preservation of the CLIP feature). Run state ``last.pth``; export ``best.pth`` (lowest validation loss) holds
``model_state_dict`` with the upstream ``additive_adapter.*`` keys, which Stage 2 loads."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from common_utils.train import (
    OptimStep,
    RunDir,
    TrainState,
    adamw,
    all_reduce_mean,
    check_finite_outputs,
    cleanup_distributed,
    init_distributed,
    save_checkpoint,
    seed_everything,
    step_options,
    wrap_model,
)
from omegaconf import OmegaConf

from ..losses import build_stage1_loss
from ..model import build_encoder, build_stage1_model
from . import common

log = logging.getLogger(__name__)


@torch.no_grad()
def validate(model, loss_fn, loader, device, epoch: int) -> dict:
    """Stage 1 losses averaged over validation batches, plus the mean cosine between adapted and CLIP features."""
    model.eval()
    sums, n = {}, 0
    for batch in loader:
        out = model(common.to_device(batch, device))
        check_finite_outputs(out["final_features_norm"], epoch, "Stage 1 validation features")
        losses = loss_fn(out, batch["subgroup"].to(device))
        losses["cosine_sim"] = F.cosine_similarity(out["final_features_norm"], out["clip_features"], dim=-1).mean()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    return {k: v / n for k, v in sums.items()}


def export_adapter(path: Path, model, epoch: int, val_loss: float, cfg) -> None:
    """The Stage 1 export: ``model_state_dict`` (``additive_adapter.*``), as upstream's Stage 1 checkpoints."""
    save_checkpoint({"epoch": epoch, "model_state_dict": model.adapter_state_dict(), "val_loss": val_loss,
                     "config": OmegaConf.to_container(cfg, resolve=True)}, path)


def train(cfg, resume: str | None = None, overwrite: bool = False) -> Path:
    """Train the Stage 1 adapter; returns the run directory (``last.pth``, ``best.pth``, ``metrics.jsonl``)."""
    ctx = init_distributed(cfg.device)
    run = RunDir(cfg.run_dir, ctx, resume=resume, overwrite=overwrite)
    seed_everything(cfg.seed)
    t = cfg.train
    encoder = build_encoder(cfg.clip, ctx.device, t.channels_last)
    model = build_stage1_model(cfg.model, encoder)
    loss_fn = build_stage1_loss(cfg.loss)
    train_ds = common.build_split(cfg, cfg.data.train_sets, encoder, ctx)
    val_ds = common.build_split(cfg, cfg.data.val_sets, encoder, ctx)
    if min(r.subgroup for r in train_ds.rows) < 0:
        raise ValueError("data.train_sets: Stage 1 needs demographics (gender and race) for every image; a 'csv' "
                         "list has none")
    loader, sampler = common.train_loader(train_ds, cfg, ctx, [r.subgroup for r in train_ds.rows])
    val_loader = common.eval_loader(val_ds, cfg, ctx, shard=False)  # every rank: the same batches and losses
    run.write_config(cfg)

    net = wrap_model(model, ctx, compile=t.compile)
    optimizer = adamw(model.additive_adapter.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                      betas=tuple(t.betas))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs, eta_min=t.eta_min)
    step = OptimStep(optimizer, device=ctx.device, model=net, **step_options(t))
    state = TrainState(models={"model": model.additive_adapter}, optimizers={"model": optimizer},
                       schedulers={"model": scheduler}, steppers={"model": step})
    resumed = run.resume(state)
    best = resumed.extra["best_val_loss"] if resumed else math.inf

    for epoch in range(run.start_epoch, t.epochs):
        sampler.set_epoch(epoch)
        net.train()
        step.begin_epoch(epoch, len(loader))
        sums = {}
        for batch in loader:
            batch = common.to_device(batch, ctx.device, t.channels_last)
            with step.autocast():
                out = net(batch)
            losses = loss_fn({k: v.float() for k, v in out.items()}, batch["subgroup"])
            step(losses["loss"])
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val = validate(model, loss_fn, val_loader, ctx.device, epoch + 1)
        row = {**{f"train/{k}": float(all_reduce_mean(v / len(loader))) for k, v in sums.items()}, "train/lr": lr,
               **{f"val/{k}": v for k, v in val.items()}}
        if val["loss"] < best:
            best = val["loss"]
            if ctx.is_main:
                export_adapter(run.path / "best.pth", model, epoch + 1, best, cfg)
        run.end_epoch(state, row, extra={"best_val_loss": best})
    run.close()
    cleanup_distributed()
    return run.path
