"""Training loop, validation and per-CSV evaluation."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch
import yaml
from common_utils.metrics import binary_metrics
from common_utils.train import (
    MetricLogger,
    all_gather_cat,
    autocast_context,
    barrier,
    check_finite,
    cleanup_distributed,
    gather_rng_states,
    init_distributed,
    make_grad_scaler,
    prepare_run_dir,
    progress,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from timm.data import Mixup
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .data import EvalTransform, TrainTransform, build_loader, collate_list, read_rows, set_loader_epoch
from .lr_scheduler import lr_at, set_lr
from .models import build_cls_model, load_pretrained
from .models.losses import build_loss
from .models.sid import SEMANTIC_MODULES
from .optimizer import build_optimizer
from .utils import load_checkpoint_file, load_state_dict_checked

log = logging.getLogger(__name__)


def cfg_to_dict(cfg) -> dict:
    return yaml.safe_load(cfg.dump())


def apply_training_stage(model: nn.Module, optimizer, epoch: int, cfg) -> int:
    """Stage 1 (epoch < TRAIN.SEMANTIC_STAGE_EPOCHS, models with semantic modules): only those train.
    Stage 2: every parameter in the optimizer trains. Returns the stage."""
    names = {n for g in optimizer.param_groups for n in g["names"]}
    has_semantic = any(n.startswith(SEMANTIC_MODULES) for n in names)
    stage = 1 if has_semantic and epoch < cfg.TRAIN.SEMANTIC_STAGE_EPOCHS else 2
    for n, p in model.named_parameters():
        if n in names:
            p.requires_grad_(stage == 2 or n.startswith(SEMANTIC_MODULES))
    return stage


def build_mixup(cfg) -> Mixup | None:
    a = cfg.AUG
    if not (a.MIXUP or a.CUTMIX):
        return None
    return Mixup(mixup_alpha=a.MIXUP, cutmix_alpha=a.CUTMIX, prob=a.MIXUP_PROB, switch_prob=a.MIXUP_SWITCH_PROB,
                 mode=a.MIXUP_MODE, label_smoothing=0.0, num_classes=2)


def train_one_epoch(model, loader, optimizer, loss_fn, scaler, mixup, cfg, ctx, epoch, steps_per_epoch,
                    total_steps, logger=None) -> dict:
    model.train()
    t, accum = cfg.TRAIN, cfg.TRAIN.ACCUMULATION_STEPS
    warmup = t.WARMUP_EPOCHS * steps_per_epoch
    sums, count = {}, 0
    optimizer.zero_grad(set_to_none=True)
    for i, (x, y, _) in enumerate(progress(loader, desc=f"epoch {epoch}", enabled=ctx.is_main)):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device)
        if mixup is not None:
            x, y = mixup(x, y.long())
            y = y[:, 1]  # soft probability of "fake"
        step = epoch * steps_per_epoch + i // accum
        with autocast_context(ctx.device, cfg.PRECISION):
            logits, aux = model(x, return_aux=True)
            losses = loss_fn(logits, y, aux)
        check_finite(losses["loss"], step)
        scaler.scale(losses["loss"] / accum).backward()
        if (i + 1) % accum == 0:
            set_lr(optimizer, lr_at(step, total_steps, warmup, t.BASE_LR, t.WARMUP_LR, t.MIN_LR))
            if t.CLIP_GRAD:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], t.CLIP_GRAD)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        count += 1
    return {f"train_{k}": v / max(count, 1) for k, v in sums.items()}


@torch.no_grad()
def predict(model, loader, ctx, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid scores and labels in dataset order, gathered over ranks (DistributedSampler padding dropped)."""
    model.eval()
    scores, labels, index = [], [], []
    for images, y, idx in progress(loader, desc="eval", enabled=ctx.is_main, leave=False):
        with autocast_context(ctx.device, cfg.PRECISION):
            logits = model([im.to(ctx.device) for im in images], cfg.MODEL.FEATURE_EXTRACTION_BATCH)
        scores.append(torch.sigmoid(logits.float()).reshape(-1))
        labels.append(y.to(ctx.device))
        index.append(idx.to(ctx.device))
    s, y, idx = (all_gather_cat(torch.cat(t)).cpu().numpy() for t in (scores, labels, index))
    _, first = np.unique(idx, return_index=True)
    order = first[np.argsort(idx[first])]
    return s[order], y[order].astype(int)


def evaluate_rows(model, rows, ctx, cfg, resize_to=None, batch_size=None) -> dict:
    """Metrics of one test set scored together; a single-class set is flagged and gets no AUC/AP."""
    loader = build_loader(rows, EvalTransform(cfg.DATA.IMG_SIZE, resize_to), batch_size or cfg.DATA.TEST_BATCH_SIZE,
                          ctx, cfg, train=False, collate=collate_list, prefetch=cfg.DATA.TEST_PREFETCH_FACTOR)
    scores, labels = predict(model, loader, ctx, cfg)
    m = binary_metrics(labels, scores)
    out = {"auc": m["auc"], "ap": m["ap"], "acc": m["acc"], "n": m["n"], "n_real": m["n_neg"], "n_fake": m["n_pos"],
           "single_class": m["n_pos"] == 0 or m["n_neg"] == 0}
    return out | {"scores": scores, "labels": labels}


def write_scores(path: Path, rows, scores, column: str, with_label: bool = True) -> None:
    """CSV ``image[,class],<column>`` with one sigmoid score per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image"] + (["class"] if with_label else []) + [column])
        for r, s in zip(rows, scores):
            w.writerow([str(r.image)] + ([r.label] if with_label else []) + [f"{s:.6f}"])


def train_model(cfg, data_path, csv_root=None, test_csvs=(), test_csv_roots=(), resume=None, output=None):
    """Train from a SPAI CSV (split train/val); writes run_dir/{last,best}.pth, metrics.jsonl, config.yaml."""
    ctx = init_distributed()
    seed_everything(cfg.SEED + ctx.rank)
    run_dir = Path(output or cfg.OUTPUT)
    prepare_run_dir(run_dir, cfg_to_dict(cfg), ctx.is_main)
    logger = MetricLogger(run_dir, ctx.is_main)

    train_rows = read_rows(data_path, csv_root, "train")
    val_rows = read_rows(data_path, csv_root, "val")
    if cfg.AUG.MIXUP or cfg.AUG.CUTMIX:
        if cfg.DATA.BATCH_SIZE % 2:
            raise ValueError("AUG.MIXUP/CUTMIX need an even DATA.BATCH_SIZE")
    train_loader = build_loader(train_rows, TrainTransform(cfg), cfg.DATA.BATCH_SIZE, ctx, cfg, train=True,
                                seed=cfg.SEED, prefetch=cfg.DATA.PREFETCH_FACTOR)
    if len(train_loader) == 0:
        raise ValueError(f"{data_path}: {len(train_rows)} training rows, fewer than one batch of {cfg.DATA.BATCH_SIZE}")
    val_loader = build_loader(val_rows, EvalTransform(cfg.DATA.IMG_SIZE), cfg.DATA.VAL_BATCH_SIZE, ctx, cfg,
                              train=False, collate=collate_list, prefetch=cfg.DATA.VAL_PREFETCH_FACTOR)

    model = build_cls_model(cfg).to(ctx.device)
    if cfg.PRETRAINED:
        load_pretrained(model, cfg.PRETRAINED)
    optimizer = build_optimizer(cfg, model)
    scaler = make_grad_scaler(cfg.PRECISION, ctx.device)
    loss_fn, mixup = build_loss(cfg), build_mixup(cfg)
    steps_per_epoch = len(train_loader) // cfg.TRAIN.ACCUMULATION_STEPS
    total_steps = cfg.TRAIN.EPOCHS * steps_per_epoch

    start_epoch, best_auc = cfg.TRAIN.START_EPOCH, -1.0
    resume = resolve_resume(resume, run_dir / "last.pth")
    if resume:
        ckpt = load_checkpoint_file(resume)
        load_state_dict_checked(model, ckpt["model"], source=str(resume))
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        restore_rng_state(ckpt["rng"][min(ctx.rank, len(ckpt["rng"]) - 1)])  # each rank its own stream
        start_epoch, best_auc = ckpt["epoch"] + 1, ckpt["best_auc"]
        log.info("resumed from %s at epoch %d", resume, start_epoch)

    for epoch in range(start_epoch, cfg.TRAIN.EPOCHS):
        stage = apply_training_stage(model, optimizer, epoch, cfg)
        net = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None) \
            if ctx.distributed else model
        set_loader_epoch(train_loader, cfg.SEED, epoch)
        stats = train_one_epoch(net, train_loader, optimizer, loss_fn, scaler, mixup, cfg, ctx, epoch,
                                steps_per_epoch, total_steps)
        scores, labels = predict(model, val_loader, ctx, cfg) if len(val_rows) else (np.zeros(0), np.zeros(0))
        val = binary_metrics(labels, scores) if len(val_rows) else {"auc": None, "ap": None, "acc": None}
        val_auc = val["auc"] if val["auc"] is not None else -1.0
        stats |= {"stage": stage, "val_auc": val["auc"], "val_ap": val["ap"], "val_acc": val["acc"],
                  "lr": optimizer.param_groups[-1]["lr"]}
        logger.log(epoch, stats)
        is_best = val_auc > best_auc
        best_auc = max(best_auc, val_auc)
        rng_states = gather_rng_states()  # collective: every rank takes part
        if ctx.is_main:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scaler": scaler.state_dict(), "epoch": epoch, "best_auc": best_auc,
                     "rng": rng_states, "config": cfg_to_dict(cfg)}
            save_checkpoint(state, run_dir / "last.pth")
            if is_best:
                save_checkpoint(state, run_dir / "best.pth")
        barrier()
    apply_training_stage(model, optimizer, cfg.TRAIN.EPOCHS, cfg)

    results = {}
    if test_csvs:
        if (run_dir / "best.pth").is_file():
            load_state_dict_checked(model, load_checkpoint_file(run_dir / "best.pth")["model"])
        roots = list(test_csv_roots) + [None] * (len(test_csvs) - len(test_csv_roots))
        for csv_path, root in zip(test_csvs, roots):
            rows = read_rows(csv_path, root, "test")
            m = evaluate_rows(model, rows, ctx, cfg)
            name = Path(csv_path).stem
            results[name] = {k: v for k, v in m.items() if k not in ("scores", "labels")}
            if ctx.is_main:
                write_scores(run_dir / f"scores_{name}.csv", rows, m["scores"], cfg.TAG)
        logger.log(cfg.TRAIN.EPOCHS, {f"test_{name}_{k}": v for name, m in results.items() for k, v in m.items()
                                      if k in ("auc", "ap", "acc")})
        if ctx.is_main:
            (run_dir / "test_metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    logger.close()
    cleanup_distributed()
    return model, (results if ctx.is_main else {})
