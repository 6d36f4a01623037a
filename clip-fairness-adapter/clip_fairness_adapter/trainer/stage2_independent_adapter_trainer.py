"""Stage 2 training: CE + lambda_fair(t) * Stage2FairnessLoss, AdamW, warm-up + CosineAnnealingWarmRestarts.

Run state ``last.pth`` (``models.model`` = the heads, ``models.loss_weighting``); export ``best.pth`` (highest
validation AUC: ``model_state_dict`` with the heads under upstream key names), which ``eval`` and ``infer`` load."""
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
    cleanup_distributed,
    init_distributed,
    save_checkpoint,
    seed_everything,
    step_options,
    wrap_model,
)
from omegaconf import OmegaConf
from torch import nn

from ..losses import build_fair_loss, build_loss_weighting
from ..model import Stage2IndependentAdapterModel, build_encoder, build_model
from . import common
from .evaluate import validate

log = logging.getLogger(__name__)

MONITORED = ("loss_total", "loss_cls", "loss_fair", "lambda_fair", "gate_mean", "acc")


def gate_prior_loss(gate: torch.Tensor) -> torch.Tensor:
    """-mean(log g + log(1 - g)) over the gates [B,1]: the negative log of a Beta(2, 2)-shaped prior, which pulls a
    gate that runs towards 0 or 1 back with a force that grows as it saturates (its minimum is at g = 0.5)."""
    g = gate.float().clamp(1e-6, 1 - 1e-6)
    return -(g.log() + (1 - g).log()).mean()


class Stage2Objective(nn.Module):
    """The model, its fairness loss and its loss weighting as one module (DDP then also synchronises the weighting's
    learned log-variances). forward(batch, ramp) -> (model outputs, {loss_total, loss_cls, loss_fair, lambda_fair,
    loss_gate}); total = weighting(CE, ramp * L_fair) + gate_prior * gate_prior_loss."""

    def __init__(self, model: Stage2IndependentAdapterModel, fair_loss, weighting: nn.Module, gate_prior: float = 0.0):
        super().__init__()
        self.model, self.fair_loss, self.weighting, self.gate_prior = model, fair_loss, weighting, gate_prior

    def forward(self, batch: dict, ramp: float):
        out = self.model(batch)
        loss_cls = F.cross_entropy(out["cls"].float(), batch["label"])
        loss_fair, _ = self.fair_loss(out["fused_features_norm"], batch["label"], batch["subgroup"])
        total, lambda_fair, _ = self.weighting(loss_cls, ramp * loss_fair)
        loss_gate = gate_prior_loss(out["gate"])
        if self.gate_prior:
            total = total + self.gate_prior * loss_gate
        return out, {"loss_total": total, "loss_cls": loss_cls, "loss_fair": loss_fair,
                     "lambda_fair": ramp * lambda_fair, "loss_gate": loss_gate}


def build_scheduler(optimizer, train_cfg):
    """Linear warm-up for ``warmup_epochs``, then CosineAnnealingWarmRestarts(T_0, T_mult, eta_min); per epoch."""
    t = train_cfg
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


def train_one_epoch(objective, step: OptimStep, loader, cfg, ctx, epoch: int) -> dict:
    """One epoch; returns the epoch means of ``MONITORED`` (all ranks)."""
    objective.train()
    sums = {k: torch.zeros((), device=ctx.device) for k in MONITORED}
    step.begin_epoch(epoch, len(loader))
    for i, batch in enumerate(loader):
        batch = common.to_device(batch, ctx.device, cfg.train.channels_last)
        with step.autocast():
            out, losses = objective(batch, fair_ramp(cfg, epoch, i, len(loader)))
        step(losses["loss_total"])
        losses["gate_mean"] = out["gate"].mean()
        losses["acc"] = (out["cls"].argmax(1) == batch["label"]).float().mean()
        for k in MONITORED:
            sums[k] += losses[k].detach().float()
    return {k: float(all_reduce_mean(v / len(loader))) for k, v in sums.items()}


def export_heads(path: Path, model, weighting, epoch: int, val_auc: float, cfg) -> None:
    save_checkpoint({"epoch": epoch, "model_state_dict": model.heads_state_dict(),
                     "loss_weighting_state_dict": weighting.state_dict(), "val_auc": val_auc,
                     "config": OmegaConf.to_container(cfg, resolve=True)}, path)


def train(cfg, resume: str | None = None, overwrite: bool = False) -> Path:
    """Train Stage 2 as configured; returns the run directory (``last.pth``, ``best.pth``, ``metrics.jsonl``)."""
    ctx = init_distributed(cfg.device)
    run = RunDir(cfg.run_dir, ctx, resume=resume, overwrite=overwrite)
    seed_everything(cfg.seed)
    t = cfg.train
    encoder = build_encoder(cfg.clip, ctx.device, t.channels_last)
    model = build_model(cfg, encoder)
    model.load_stage1_checkpoint(cfg.stage1_checkpoint)
    weighting = build_loss_weighting(cfg.loss_weighting)
    fair_loss = build_fair_loss(cfg.loss)

    train_ds = common.build_split(cfg, cfg.data.train_sets, encoder, ctx)
    val_ds = common.build_split(cfg, cfg.data.val_sets, encoder, ctx)
    bad = sorted({r.label for r in train_ds.rows} - {0, 1})
    if bad or min(r.subgroup for r in train_ds.rows) < 0:
        raise ValueError("data.train_sets: Stage 2 needs a real/fake label and demographics for every image "
                         f"(PG-FDD CSVs); got labels {bad} or unknown subgroups")
    groups = [r.label * cfg.loss.num_subgroups + r.subgroup for r in train_ds.rows]
    loader, sampler = common.train_loader(train_ds, cfg, ctx, groups)
    val_loader = common.eval_loader(val_ds, cfg, ctx)  # this rank's shard; validate gathers
    run.write_config(cfg)

    counts = parameter_counts(model, weighting)
    if ctx.is_main:
        for name, c in counts.items():
            log.info("params %-22s trainable %12s  frozen %12s", name, f"{c['trainable']:,d}", f"{c['frozen']:,d}")
    heads = model.heads()
    objective = wrap_model(Stage2Objective(model, fair_loss, weighting, cfg.fusion.gate_prior), ctx, compile=t.compile)
    trainable = [p for p in heads.parameters() if p.requires_grad] + list(weighting.parameters())
    optimizer = adamw(trainable, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    scheduler = build_scheduler(optimizer, t)
    step = OptimStep(optimizer, device=ctx.device, model=objective, **step_options(t))
    state = TrainState(models={"model": heads, "loss_weighting": weighting}, optimizers={"model": optimizer},
                       schedulers={"model": scheduler}, steppers={"model": step})
    resumed = run.resume(state)
    best_auc = resumed.extra["best_val_auc"] if resumed else -math.inf
    initial = {}
    if run.start_epoch == 0:  # the untrained model's validation values, logged with epoch 1
        val = validate(model, val_loader, ctx.device, cfg, fair_loss, 0)
        initial = {"val/sinkhorn_dist_init": val["sinkhorn_dist"], "val/gate_mean_init": val["gate_mean"]}

    for epoch in range(run.start_epoch, t.epochs):
        sampler.set_epoch(epoch)
        stats = train_one_epoch(objective, step, loader, cfg, ctx, epoch)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val = validate(model, val_loader, ctx.device, cfg, fair_loss, epoch + 1)
        row = {**{f"train/{k}": v for k, v in stats.items()}, "train/lr": lr,
               "val/auc": val["detection"]["auc"], "val/acc": val["detection"]["acc"],
               "val/subgroup_auc_std": val["subgroup_auc_std"], "val/sinkhorn_dist": val["sinkhorn_dist"],
               "val/gate_mean": val["gate_mean"], **(initial if epoch == 0 else {})}
        if hasattr(weighting, "log_var_cls"):
            row.update({"train/log_var_cls": weighting.log_var_cls.item(),
                        "train/log_var_fair": weighting.log_var_fair.item()})
        auc = val["detection"]["auc"] if val["detection"]["auc"] is not None else -math.inf
        if auc > best_auc:
            best_auc = auc
            if ctx.is_main:
                export_heads(run.path / "best.pth", model, weighting, epoch + 1, auc, cfg)
        run.end_epoch(state, row, extra={"best_val_auc": best_auc, "parameter_counts": counts})
    run.close()
    cleanup_distributed()
    return run.path
