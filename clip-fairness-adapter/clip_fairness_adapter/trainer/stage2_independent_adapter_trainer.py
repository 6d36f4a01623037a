"""Stage 2 training: CE + lambda_fair(t) * Stage2FairnessLoss, AdamW, warm-up + CosineAnnealingWarmRestarts."""
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
    load_checkpoint,
    make_grad_scaler,
    prepare_run_dir,
    progress,
    resolve_resume,
)
from torch.nn.parallel import DistributedDataParallel

from ..losses import BatchedSinkhorn, Stage2FairnessLoss, build_loss_weighting
from ..model import Stage2IndependentAdapterModel
from . import common
from .evaluate import validate

log = logging.getLogger(__name__)


def build_model(cfg, encoder) -> Stage2IndependentAdapterModel:
    m = cfg.model
    return Stage2IndependentAdapterModel(encoder, 768, m.stage1_hidden_dim, m.stage2_hidden_dim,
                                         tuple(m.classifier_hidden_dims), 2, m.dropout, m.fusion_num_heads,
                                         cfg.fusion.gate_bias, cfg.fusion.kv)


def build_fair_loss(cfg) -> Stage2FairnessLoss:
    sk = BatchedSinkhorn(cfg.loss.sinkhorn_blur, 2, cfg.loss.sinkhorn_scaling, cfg.loss.diameter)
    return Stage2FairnessLoss(sk, cfg.loss.num_subgroups, cfg.loss.min_samples_per_subgroup,
                              cfg.loss.min_class_samples, cfg.loss.truncate)


def build_scheduler(optimizer, cfg):
    """Linear warm-up for ``warmup_epochs``, then CosineAnnealingWarmRestarts(T_0, T_mult, eta_min); per epoch."""
    t = cfg.train
    cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=t.T_0, T_mult=t.T_mult,
                                                                  eta_min=t.eta_min)
    if t.warmup_epochs == 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (t.warmup_epochs + 1),
                                               total_iters=t.warmup_epochs)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[t.warmup_epochs])


def parameter_counts(model: Stage2IndependentAdapterModel, weighting) -> dict[str, dict[str, int]]:
    """Trainable / frozen parameter counts per component (compare the design's table at ViT-L/14 size)."""
    parts = {"clip": model.clip_model, "stage1_adapter": model.stage1_adapter, "stage2_adapter": model.stage2_adapter,
             "fusion_attention_ffn": [model.fusion.cross_attn, model.fusion.norm1, model.fusion.ffn,
                                      model.fusion.norm2],
             "dynamic_gate": model.fusion.gate_net, "loss_weighting": weighting, "classifier": model.binary_classifier}
    out = {}
    for name, mods in parts.items():
        mods = mods if isinstance(mods, list) else [mods]
        params = [p for m in mods if m is not None for p in m.parameters()]
        out[name] = {"trainable": sum(p.numel() for p in params if p.requires_grad),
                     "frozen": sum(p.numel() for p in params if not p.requires_grad)}
    out["total"] = {k: sum(v[k] for v in out.values()) for k in ("trainable", "frozen")}
    return out


def fair_ramp(cfg, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Factor on L_fair: linear 0 -> 1 over ``loss_weighting.fair_warmup_epochs`` epochs (per step), 1 when off."""
    warmup = cfg.loss_weighting.fair_warmup_epochs
    if warmup <= 0:
        return 1.0
    return min(1.0, (epoch * steps_per_epoch + step) / (warmup * steps_per_epoch))


def train_one_epoch(model, weighting, fair_loss, loader, optimizer, scaler, cfg, ctx, epoch: int) -> dict:
    model.train()
    weighting.train()
    sums = {k: torch.zeros((), device=ctx.device) for k in
            ("loss_total", "loss_cls", "loss_fair", "lambda_fair", "gate_mean", "acc")}
    steps = 0
    accum = cfg.train.accum_steps
    params = [p for g in optimizer.param_groups for p in g["params"]]
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(progress(loader, desc=f"stage2 epoch {epoch}", enabled=ctx.is_main)):
        batch = common.to_device(batch, ctx.device, cfg.train.channels_last)
        with autocast_context(ctx.device, cfg.precision):
            out = model(batch)
            loss_cls = F.cross_entropy(out["cls"].float(), batch["label"])
        loss_fair, _ = fair_loss(out["fused_features_norm"].float(), batch["label"], batch["subgroup"])
        ramp = fair_ramp(cfg, epoch, i, len(loader))
        total, lambda_fair, _ = weighting(loss_cls, ramp * loss_fair)
        lambda_fair = ramp * lambda_fair
        check_finite(total, epoch * len(loader) + i)
        scaler.scale(total / accum).backward()
        if (i + 1) % accum == 0 or i + 1 == len(loader):
            if ctx.distributed:  # the loss-weighting parameters live outside DDP
                for p in weighting.parameters():
                    if p.grad is not None:
                        p.grad.copy_(all_reduce_mean(p.grad))
            if cfg.train.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        acc = (out["cls"].argmax(1) == batch["label"]).float().mean()
        for k, v in (("loss_total", total), ("loss_cls", loss_cls), ("loss_fair", loss_fair),
                     ("lambda_fair", lambda_fair), ("gate_mean", out["gate"].mean()), ("acc", acc)):
            sums[k] += v.detach().float()
        steps += 1
    return {k: float(all_reduce_mean(v / max(steps, 1))) for k, v in sums.items()}


def train(cfg, resume: str | None = None) -> Path:
    """Train Stage 2 as configured; returns the run directory (``last.pth``, ``best.pth``, ``metrics.jsonl``)."""
    ctx = common.setup(cfg)
    run_dir = prepare_run_dir(cfg.run_dir, cfg, ctx.is_main)
    encoder = common.build_encoder(cfg, ctx)
    model = build_model(cfg, encoder).to(ctx.device)
    if cfg.stage1_checkpoint is None:
        raise ValueError("stage1_checkpoint is required: Stage 2 builds on a trained Stage 1 adapter")
    model.load_stage1_checkpoint(cfg.stage1_checkpoint)
    weighting = build_loss_weighting(cfg.loss_weighting).to(ctx.device)
    fair_loss = build_fair_loss(cfg)

    train_ds = common.build_split(cfg, cfg.data.train_csvs, encoder, ctx)
    val_ds = common.build_split(cfg, cfg.data.val_csvs, encoder, ctx)
    groups = [r.label * cfg.loss.num_subgroups + r.subgroup for r in train_ds.rows]
    loader, sampler = common.train_loader(train_ds, cfg, ctx, groups)
    val_loader = common.eval_loader(val_ds, cfg, ctx)  # this rank's shard; validate gathers

    counts = parameter_counts(model, weighting)
    if ctx.is_main:
        for name, c in counts.items():
            print(f"params {name:22s} trainable {c['trainable']:>12,d}  frozen {c['frozen']:>12,d}")
    trainable = [p for p in model.parameters() if p.requires_grad] + list(weighting.parameters())
    t = cfg.train
    optimizer = torch.optim.AdamW(trainable, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    scheduler = build_scheduler(optimizer, cfg)
    scaler = make_grad_scaler(cfg.precision, ctx.device)

    start_epoch, best_auc = 0, float("-inf")
    resume_path = resolve_resume(resume, run_dir / "last.pth")
    if resume_path is not None:
        ckpt = common.load_resume(resume_path, optimizer, scheduler, scaler)
        model.load_heads_state_dict(ckpt["model_state_dict"], str(resume_path))
        weighting.load_state_dict(ckpt["loss_weighting_state_dict"])
        start_epoch, best_auc = ckpt["epoch"], ckpt["best_val_auc"]

    net = model
    if ctx.distributed:
        net = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    if t.compile:
        net = torch.compile(net)
    logger = MetricLogger(run_dir, ctx.is_main)
    for epoch in range(start_epoch, t.epochs):
        sampler.set_epoch(epoch)
        stats = train_one_epoch(net, weighting, fair_loss, loader, optimizer, scaler, cfg, ctx, epoch)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val = validate(model, val_loader, ctx.device, cfg, fair_loss)
        row = {**{f"train/{k}": v for k, v in stats.items()}, "train/lr": lr,
               "val/auc": val["detection"]["auc"], "val/acc": val["detection"]["acc"],
               "val/subgroup_auc_std": val["subgroup_auc_std"], "val/sinkhorn_dist": val["sinkhorn_dist"],
               "val/gate_mean": val["gate_mean"]}
        if hasattr(weighting, "log_var_cls"):
            row.update({"train/log_var_cls": weighting.log_var_cls.item(), "train/log_var_fair":
                        weighting.log_var_fair.item()})
        logger.log(epoch + 1, row)
        auc = val["detection"]["auc"] if val["detection"]["auc"] is not None else float("-inf")
        is_best = auc > best_auc
        best_auc = max(best_auc, auc)
        state = common.checkpoint_state(epoch + 1, model.heads_state_dict(), optimizer, scheduler, scaler, cfg,
                                        loss_weighting_state_dict=weighting.state_dict(), best_val_auc=best_auc,
                                        parameter_counts=counts)
        common.save(state, run_dir, ctx, best=is_best)
    logger.close()
    cleanup_distributed()
    return run_dir


def load_trained(cfg, ctx, encoder, checkpoint: str | Path) -> Stage2IndependentAdapterModel:
    """A Stage 2 model with heads from one of our Stage 2 checkpoints."""
    model = build_model(cfg, encoder).to(ctx.device)
    ckpt = load_checkpoint(checkpoint)
    model.load_heads_state_dict(ckpt["model_state_dict"], str(checkpoint))
    return model.eval()
