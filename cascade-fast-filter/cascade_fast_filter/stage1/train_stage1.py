"""Task 1.1: fine-tune the MobileNetV4 fast filter (one logit, BCE) and keep the best checkpoint by val AUC.

Single process, torchrun or SLURM srun with the same code. `--resume auto` continues from the run dir's
last.pth at an epoch boundary and reproduces the uninterrupted run exactly.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common_utils.metrics import binary_metrics
from common_utils.train import (
    MetricLogger,
    all_gather_cat,
    all_reduce_mean,
    autocast_context,
    barrier,
    check_finite,
    cleanup_distributed,
    gather_rng_states,
    init_distributed,
    load_checkpoint,
    make_grad_scaler,
    prepare_run_dir,
    progress,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from omegaconf import OmegaConf
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from .utils import ManifestDataset, build_model, build_transforms, read_split

LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "val_f1", "best_val_auc"]


def cosine_with_warmup(total_steps: int, warmup_steps: int, min_ratio: float):
    """LR multiplier per optimizer step: linear warmup to 1, then cosine down to min_ratio."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress_ = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress_))
    return factor


@torch.no_grad()
def validate(model, loader, ctx, cfg):
    """Logits/labels of the whole val set gathered from all ranks (padding duplicates removed)."""
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


def write_log_csv(path: Path, history: list[dict]):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def train(cfg, resume=None, stop_after_epoch: int | None = None) -> dict:
    """Train per `cfg`; returns {'best_val_auc', 'history', 'run_dir'}. `stop_after_epoch` ends the run early
    after that many epochs (as an interruption would), leaving last.pth to resume from."""
    ctx = init_distributed()
    seed_everything(cfg.seed)
    run_dir = Path(cfg.run_dir)
    if ctx.is_main:
        prepare_run_dir(run_dir, cfg, is_main=True)
    barrier()

    train_rows, val_rows = read_split(cfg, "train"), read_split(cfg, "val")
    train_ds = ManifestDataset(train_rows, build_transforms(cfg, train=True))
    val_ds = ManifestDataset(val_rows, build_transforms(cfg, train=False))
    train_sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                       seed=cfg.seed)
    val_sampler = DistributedSampler(val_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)
    bs = cfg.train.batch_size
    train_loader = DataLoader(train_ds, batch_size=bs, sampler=train_sampler, num_workers=cfg.data.num_workers,
                              drop_last=len(train_sampler) > bs, pin_memory=ctx.device.type == "cuda")
    val_loader = DataLoader(val_ds, batch_size=cfg.eval.batch_size, sampler=val_sampler,
                            num_workers=cfg.data.num_workers)

    net = build_model(cfg.model).to(ctx.device)
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = DistributedDataParallel(net, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None) \
        if ctx.distributed else net
    ema = ModelEmaV3(net, decay=cfg.train.ema_decay, use_warmup=cfg.train.ema_warmup) if cfg.train.ema else None
    if cfg.train.compile:
        model = torch.compile(model)
    seed_everything(cfg.seed + ctx.rank)  # per-rank augmentation streams after identical model init

    accum = cfg.train.grad_accum
    steps_per_epoch = math.ceil(len(train_loader) / accum)
    lr = cfg.train.lr
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(
        cfg.train.epochs * steps_per_epoch, round(cfg.train.warmup_epochs * steps_per_epoch),
        cfg.train.min_lr / lr))
    scaler = make_grad_scaler(cfg.train.precision, ctx.device)

    start_epoch, best_auc, history = 0, -1.0, []
    resume_path = resolve_resume(resume, run_dir / "last.pth")
    if resume_path is not None:
        state = load_checkpoint(resume_path, map_location=ctx.device)
        net.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, best_auc, history = state["epoch"], state["best_val_auc"], list(state["history"])
        restore_rng_state(state["rng"][min(ctx.rank, len(state["rng"]) - 1)])
        if ctx.is_main:
            print(f"resumed from {resume_path} at epoch {start_epoch}")

    logger = MetricLogger(run_dir, is_main=ctx.is_main)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.time()
        train_sampler.set_epoch(epoch)
        model.train()
        loss_sum = torch.zeros((), device=ctx.device)
        correct = torch.zeros((), device=ctx.device)
        seen = torch.zeros((), device=ctx.device)
        optimizer.zero_grad(set_to_none=True)
        batches = progress(train_loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", enabled=ctx.is_main,
                           leave=False)
        for it, (x, y, _) in enumerate(batches):
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            if cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_context(ctx.device, cfg.train.precision):
                logits = model(x).reshape(-1)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y)
            check_finite(loss, epoch * len(train_loader) + it)
            scaler.scale(loss / accum).backward()
            if (it + 1) % accum == 0 or it + 1 == len(train_loader):
                scaler.unscale_(optimizer)
                if cfg.train.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if ema is not None:
                    ema.update(net, step=scheduler.last_epoch)
            loss_sum += loss.detach() * len(y)
            correct += ((logits.detach() >= 0).float() == y).sum()
            seen += len(y)
            if ctx.is_main and it % cfg.train.log_every == 0:
                batches.set_postfix(loss=f"{loss.item():.4f}")

        eval_net = ema.module if ema is not None else net
        if ctx.distributed:  # BN running stats differ per rank (each updates on its own batches): use rank 0's
            for buf in eval_net.buffers():
                torch.distributed.broadcast(buf, 0)
        val_logits, val_labels = validate(eval_net, val_loader, ctx, cfg)
        val = binary_metrics(val_labels.numpy(), torch.sigmoid(val_logits).numpy())
        val_loss = F.binary_cross_entropy_with_logits(val_logits, val_labels).item()
        auc = val["auc"] if val["auc"] is not None else float("nan")
        improved = auc > best_auc
        best_auc = max(best_auc, auc) if not math.isnan(auc) else best_auc
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": all_reduce_mean(loss_sum / seen).item(),
            "train_acc": all_reduce_mean(correct / seen).item(),
            "val_loss": val_loss, "val_acc": val["acc"], "val_auc": auc, "val_f1": val["f1"],
            "best_val_auc": best_auc, "epoch_time_s": time.time() - t0,
        }
        history.append(row)
        if ctx.is_main:
            if improved:
                save_checkpoint({"model": eval_net.state_dict(), "config": resolved, "epoch": epoch + 1,
                                 "val_auc": auc}, run_dir / "best_model.pth")
            write_log_csv(run_dir / "training_log.csv", history)
            logger.log(epoch + 1, {k: v for k, v in row.items() if k != "epoch"})
            print(f"epoch {epoch + 1}: " + " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"))
        rng_all = gather_rng_states()
        if ctx.is_main:
            save_checkpoint({
                "model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "epoch": epoch + 1, "best_val_auc": best_auc, "history": history, "rng": rng_all,
                "config": resolved,
            }, run_dir / "last.pth")
        barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break

    logger.close()
    cleanup_distributed()
    return {"best_val_auc": best_auc, "history": history, "run_dir": run_dir}

