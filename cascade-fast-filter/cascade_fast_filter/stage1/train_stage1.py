"""Task 1.1: fine-tune the fast filter (one logit, BCE), keep the best weights by val AUC, stop early on val AUC.

Runs on the shared engine (``common_utils.train``: OptimStep, RunDir, TrainState), single process, torchrun or SLURM
srun with the same code. ``--resume auto`` continues from the run dir's ``last.pth`` at an epoch boundary and
reproduces the uninterrupted run exactly, early-stopping state included. ``best_model.pth`` is an export (weights,
config, epoch, val AUC), written before the epoch's ``last.pth``; ``train.save_every_epoch`` also keeps every
epoch's export as ``checkpoints/epoch_NNN.pth`` (for ``script/calibration_by_epoch.py``).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from common_utils.metrics import binary_metrics
from common_utils.train import (
    OptimStep,
    RunDir,
    TrainState,
    adamw,
    all_gather_cat,
    all_reduce_mean,
    autocast_context,
    build_loader,
    check_finite_outputs,
    cleanup_distributed,
    init_distributed,
    progress,
    save_checkpoint,
    seed_everything,
    step_options,
    wrap_model,
)
from timm.utils import ModelEmaV3
from torch.utils.data import DistributedSampler

from . import model as fast_filter
from .data import ManifestDataset, build_transforms, read_split

BEST = "best_model.pth"
LOG_CSV = "training_log.csv"
LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "val_f1", "best_val_auc",
               "epochs_since_best"]


def cosine_with_warmup(total_steps: int, warmup_steps: int, min_ratio: float):
    """LR multiplier per optimizer step: linear warmup to 1, then cosine down to min_ratio."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        done = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * done))
    return factor


class EarlyStopping:
    """Val-AUC bookkeeping: best so far, epochs since it, and whether to stop (``patience`` epochs without a gain
    above ``min_delta``; ``patience = 0`` never stops). Its ``state()`` goes into the run state's ``extra``."""

    def __init__(self, patience: int, min_delta: float, state: dict | None = None):
        state = state or {}
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.best = float(state.get("best_val_auc", -math.inf))
        self.best_epoch = int(state.get("best_epoch", 0))
        self.since_best = int(state.get("epochs_since_best", 0))
        self.stopped = bool(state.get("stopped_early", False))

    def update(self, auc: float, epoch: int) -> bool:
        """Record epoch ``epoch``'s val AUC; returns whether it is the new best."""
        improved = math.isfinite(auc) and auc > self.best + self.min_delta
        if improved:
            self.best, self.best_epoch, self.since_best = auc, epoch, 0
        else:
            self.since_best += 1
        self.stopped = self.patience > 0 and self.since_best >= self.patience
        return improved

    def state(self) -> dict:
        return {"best_val_auc": self.best if math.isfinite(self.best) else None, "best_epoch": self.best_epoch,
                "epochs_since_best": self.since_best, "stopped_early": self.stopped}


@torch.no_grad()
def validate(model, loader, ctx, cfg):
    """Logits/labels [N] of the whole val set gathered from all ranks (sampler padding removed)."""
    model.eval()
    logits, labels, index = [], [], []
    for x, y, i in loader:
        x = x.to(ctx.device)
        if cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(ctx.device, cfg.train.precision):
            logits.append(model(x).float().reshape(-1))
        labels.append(y.to(ctx.device))
        index.append(i.to(ctx.device))
    logits, labels, index = (all_gather_cat(torch.cat(t)).cpu() for t in (logits, labels, index))
    keep = np.unique(index.numpy(), return_index=True)[1]
    return logits[keep], labels[keep]


def train(cfg, resume=None, overwrite: bool = False) -> dict:
    """Train per `cfg`; returns {'best_val_auc', 'best_epoch', 'stopped_early', 'history', 'run_dir'}."""
    ctx = init_distributed(cfg.device)
    run = RunDir(cfg.run_dir, ctx, resume=resume, overwrite=overwrite, csv_name=LOG_CSV, csv_columns=LOG_COLUMNS)
    seed_everything(cfg.seed)
    cache = cfg.data.cache_decoded
    train_ds = ManifestDataset(read_split(cfg, "train"), build_transforms(cfg, train=True), cache)
    val_ds = ManifestDataset(read_split(cfg, "val"), build_transforms(cfg, train=False), cache)
    train_sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                       seed=cfg.seed)
    val_sampler = DistributedSampler(val_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)
    bs = cfg.train.batch_size
    train_loader = build_loader(train_ds, bs, ctx, sampler=train_sampler, num_workers=cfg.data.num_workers,
                                drop_last=len(train_sampler) > bs)
    val_loader = build_loader(val_ds, cfg.eval.batch_size, ctx, sampler=val_sampler, num_workers=cfg.data.num_workers)
    net = fast_filter.build(cfg.model)
    run.write_config(cfg)  # config, data and weights file validated

    model = wrap_model(net, ctx, channels_last=cfg.train.channels_last, compile=cfg.train.compile)
    ema = ModelEmaV3(net, decay=cfg.train.ema_decay, use_warmup=cfg.train.ema_warmup) if cfg.train.ema else None
    seed_everything(cfg.seed + ctx.rank)  # per-rank augmentation streams after identical model init
    optimizer = adamw(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    step = OptimStep(optimizer, device=ctx.device, model=model, **step_options(cfg.train))
    steps_per_epoch = step.steps_per_epoch(len(train_loader))
    step.scheduler = scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(
        cfg.train.epochs * steps_per_epoch, round(cfg.train.warmup_epochs * steps_per_epoch),
        cfg.train.min_lr / cfg.train.lr))
    state = TrainState(models={"model": net}, optimizers={"model": optimizer}, schedulers={"model": scheduler},
                       steppers={"model": step}, ema={"model": ema} if ema is not None else {})
    resumed = run.resume(state)
    stopper = EarlyStopping(cfg.train.patience, cfg.train.min_delta, resumed.extra if resumed else None)

    for epoch in range(run.start_epoch, cfg.train.epochs):
        if stopper.stopped:
            break
        t0 = time.time()
        train_sampler.set_epoch(epoch)
        model.train()
        step.begin_epoch(epoch, len(train_loader))
        loss_sum, correct, seen = (torch.zeros((), device=ctx.device) for _ in range(3))
        batches = progress(train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", enabled=ctx.is_main,
                           leave=False)
        for it, (x, y, _) in enumerate(batches):
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            if cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with step.autocast():
                logits = model(x).reshape(-1)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            logged = step(loss)
            if logged["stepped"] and ema is not None:
                ema.update(net, step=logged["step"])
            loss_sum += loss.detach() * len(y)
            correct += ((logits.detach() >= 0).float() == y).sum()
            seen += len(y)
            if ctx.is_main and it % cfg.train.log_every == 0:
                batches.set_postfix(loss=f"{logged['loss']:.4f}")

        eval_net = ema.module if ema is not None else net
        if ctx.distributed:  # BN running stats differ per rank (each updates on its own batches): use rank 0's
            for buf in eval_net.buffers():
                torch.distributed.broadcast(buf, 0)
        val_logits, val_labels = validate(eval_net, val_loader, ctx, cfg)
        check_finite_outputs(val_logits, epoch + 1)
        val = binary_metrics(val_labels.numpy(), torch.sigmoid(val_logits).numpy())
        auc = val["auc"] if val["auc"] is not None else float("nan")
        export = {"model": eval_net.state_dict(), "config": run.config, "epoch": epoch + 1, "val_auc": auc}
        if stopper.update(auc, epoch + 1) and ctx.is_main:  # exports first, then the epoch's run state
            save_checkpoint(export, run.path / BEST)
        if cfg.train.save_every_epoch and ctx.is_main:
            save_checkpoint(export, run.path / "checkpoints" / f"epoch_{epoch + 1:03d}.pth")
        row = {
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": all_reduce_mean(loss_sum / seen).item(),
            "train_acc": all_reduce_mean(correct / seen).item(),
            "val_loss": F.binary_cross_entropy_with_logits(val_logits, val_labels).item(),
            "val_acc": val["acc"], "val_auc": auc, "val_f1": val["f1"], "best_val_auc": stopper.best,
            "epochs_since_best": stopper.since_best, "epoch_time_s": time.time() - t0,
        }
        logged_row = run.end_epoch(state, row, extra=stopper.state())
        if ctx.is_main:
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in logged_row.items()))
            if stopper.stopped:
                print(f"early stop: no val AUC gain above {stopper.min_delta} for {stopper.patience} epochs "
                      f"(best {stopper.best:.4f} at epoch {stopper.best_epoch})")
    run.close()
    cleanup_distributed()
    return {"best_val_auc": stopper.best, "best_epoch": stopper.best_epoch, "stopped_early": stopper.stopped,
            "history": run.history, "run_dir": run.path}
