"""Training loop (on common_utils.train: OptimStep, RunDir, TrainState), validation and per-CSV evaluation."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch
import yaml
from common_utils.data import SpaiRow
from common_utils.metrics import binary_metrics, roc_auc
from common_utils.train import (
    OptimStep,
    RunDir,
    TrainState,
    all_gather_cat,
    all_reduce_mean,
    autocast_context,
    check_finite_outputs,
    cleanup_distributed,
    init_distributed,
    progress,
    save_checkpoint,
    seed_everything,
    step_options,
    wrap_model,
)
from timm.data import Mixup
from torch import nn

from .config import shared_train_knobs
from .data import EvalTransform, TrainTransform, build_loader, collate_list, read_rows, set_loader_epoch
from .lr_scheduler import lr_at, set_lr
from .models import build_cls_model, load_pretrained
from .models.losses import build_loss
from .models.sid import SEMANTIC_MODULES
from .optimizer import build_optimizer
from .tables import write_test_tables
from .utils import load_checkpoint_file, load_state_dict_checked

log = logging.getLogger(__name__)

BEST = "best.pth"  # export of the weights with the best validation AUC: {"model", "epoch", "config"}
TRAIN_EVAL = "train_eval.json"  # TRAIN.EVAL_TRAIN_IMAGES: the exported weights scored on training images


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


def mix(mixup: Mixup, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup / cutmix of views [B, V, 3, S, S] (the same box in every view) -> (views, soft P(fake) [B])."""
    B, V, C, S, _ = x.shape
    flat, soft = mixup(x.reshape(B, V * C, S, S), y.long())
    return flat.reshape(B, V, C, S, S), soft[:, 1]


def init_weights(model, cfg) -> None:
    """Load ``PRETRAINED`` (MFM backbone or SPAI checkpoint); refuse a frozen network left with random weights."""
    mfvit, random_frozen = model.mfvit, []
    backbone_loaded = False
    if cfg.PRETRAINED:
        backbone_loaded = load_pretrained(model, cfg.PRETRAINED).covers_backbone
    if mfvit.clip_backbone:
        backbone_loaded = bool(cfg.MODEL.SEMANTIC.CLIP_WEIGHTS)
    if mfvit.frozen_backbone and not backbone_loaded:
        random_frozen.append("the spectral backbone (mfvit.vit): give PRETRAINED (an MFM pre-training checkpoint or "
                             "spai.pth)" if not mfvit.clip_backbone else "the CLIP backbone: give "
                             "MODEL.SEMANTIC.CLIP_WEIGHTS")
    tower = getattr(mfvit, "semantic_tower", None)
    if tower is not None and not tower.pretrained:
        random_frozen.append("the semantic tower (mfvit.semantic_tower): give MODEL.SEMANTIC.CLIP_WEIGHTS")
    if random_frozen and not cfg.MODEL.ALLOW_RANDOM_FROZEN:
        raise ValueError("frozen network with random weights: " + "; ".join(random_frozen) + " (or set "
                         "MODEL.FREEZE_BACKBONE False to train the ViT, or MODEL.ALLOW_RANDOM_FROZEN True on purpose)")
    for what in random_frozen:
        log.warning("MODEL.ALLOW_RANDOM_FROZEN: training on top of a random frozen network (%s)", what.split(":")[0])


def train_one_epoch(net, loader, step: OptimStep, loss_fn, mixup, cfg, ctx, epoch: int, schedule) -> dict:
    """One epoch; the learning rate ``schedule(optimizer step)`` is set just before each optimizer step.

    Returns the epoch's mean loss terms and the running AUC of its (augmented, train-mode) predictions.
    """
    net.train()
    step.begin_epoch(epoch, len(loader))
    sums, count, logits_seen, labels_seen = {}, 0, [], []
    for x, y, _ in progress(loader, desc=f"epoch {epoch + 1}", enabled=ctx.is_main):
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device)
        if mixup is not None:
            x, y = mix(mixup, x, y)
        if step.will_step:
            set_lr(step.optimizer, schedule(step.optimizer_steps))
        with step.autocast():
            logits, aux = net(x, return_aux=True)
            losses = loss_fn(logits, y, aux)
        step(losses["loss"])
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        count += 1
        logits_seen.append(logits.detach().float().reshape(-1))
        labels_seen.append((y >= 0.5).float())
    out = {f"train_{k}": float(all_reduce_mean(torch.tensor(v / count))) for k, v in sums.items()}
    scores, labels = all_gather_cat(torch.cat(logits_seen)), all_gather_cat(torch.cat(labels_seen))
    out["train_auc"] = roc_auc(labels.cpu().numpy().astype(int), scores.cpu().numpy())
    return out


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


def set_metrics(labels, scores) -> dict:
    """AUC, AP, accuracy at 0.5 of one test set scored together; a single-class set is flagged (no AUC/AP)."""
    m = binary_metrics(labels, scores)
    return {"auc": m["auc"], "ap": m["ap"], "acc": m["acc"], "n": m["n"], "n_real": m["n_neg"], "n_fake": m["n_pos"],
            "single_class": m["n_pos"] == 0 or m["n_neg"] == 0}


def evaluate_rows(model, rows, ctx, cfg, resize_to=None, batch_size=None, perturb=None) -> dict:
    """:func:`set_metrics` of ``rows`` plus their ``scores`` and ``labels`` (in row order)."""
    loader = build_loader(rows, EvalTransform(cfg.DATA.IMG_SIZE, resize_to, perturb),
                          batch_size or cfg.DATA.TEST_BATCH_SIZE, ctx, cfg, train=False, collate=collate_list,
                          prefetch=cfg.DATA.TEST_PREFETCH_FACTOR)
    scores, labels = predict(model, loader, ctx, cfg)
    return set_metrics(labels, scores) | {"scores": scores, "labels": labels}


def score_sets(model, sets: dict, ctx, cfg, resize_to=None, batch_size=None, perturb=None) -> dict:
    """``{name: rows}`` -> ``{name: (scores, labels)}``, scoring an image listed in several sets once (the
    per-generator sets share their real images)."""
    unique = list(dict.fromkeys(r.image for rows in sets.values() for r in rows))
    placeholder = [SpaiRow(path, 0, "test", i + 1) for i, path in enumerate(unique)]
    scores = dict(zip(unique, evaluate_rows(model, placeholder, ctx, cfg, resize_to, batch_size, perturb)["scores"]))
    return {name: (np.array([scores[r.image] for r in rows]), np.array([r.label for r in rows]))
            for name, rows in sets.items()}


def csv_roots(csvs, roots) -> list:
    """Upstream's rule for ``--test-csv-root-dir``: none -> each CSV's own folder; one -> the same root for every CSV;
    otherwise one per CSV."""
    roots = list(roots or [])
    if len(roots) <= 1:
        return (roots or [None]) * len(csvs)
    if len(roots) != len(csvs):
        raise ValueError(f"{len(roots)} --test-csv-root-dir values for {len(csvs)} --test-csv files: give none "
                         "(each CSV's folder), one (for all) or one per CSV")
    return roots


def evaluate_csvs(model, csvs, roots, ctx, cfg, out_dir: Path, tag: str, split: str | None = "test",
                  resize_to=None, batch_size=None) -> dict:
    """Score every CSV; write ``<name>_scores.csv`` per CSV and the per-test-set table (JSON, Markdown, CSV)."""
    sets = {Path(c).stem: read_rows(c, r, split) for c, r in zip(csvs, csv_roots(csvs, roots))}
    results = {}
    for name, (scores, labels) in score_sets(model, sets, ctx, cfg, resize_to, batch_size).items():
        results[name] = set_metrics(labels, scores)
        if ctx.is_main:
            write_scores(out_dir / f"{name}_scores.csv", sets[name], scores, tag)
    if ctx.is_main:
        write_test_tables(results, out_dir)
    return results


def write_scores(path: Path, rows, scores, column: str, with_label: bool = True) -> None:
    """CSV ``image[,class],<column>`` with one sigmoid score per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image"] + (["class"] if with_label else []) + [column])
        for r, s in zip(rows, scores):
            w.writerow([str(r.image)] + ([r.label] if with_label else []) + [f"{s:.6f}"])


def train_model(cfg, data_path, csv_root=None, test_csvs=(), test_csv_roots=(), resume=None, output=None,
                overwrite=False):
    """Train from a SPAI CSV (split train/val) on the shared engine.

    Writes to the run directory: ``last.pth`` (run state, every epoch), ``metrics.jsonl``, ``config.yaml``,
    ``best.pth`` (weights of the best validation AUC), with TRAIN.EVAL_TRAIN_IMAGES ``train_eval.json`` (those weights
    scored on training images) and, with test CSVs, ``test_metrics.{json,md,csv}`` and ``<test set>_scores.csv``.
    Returns (model with the best weights, test results).
    """
    ctx = init_distributed(cfg.DEVICE)
    run_dir = Path(output or cfg.OUTPUT)
    run = RunDir(run_dir, ctx, resume=resume, overwrite=overwrite)
    seed_everything(cfg.SEED + ctx.rank)

    train_rows = read_rows(data_path, csv_root, "train")
    val_rows = read_rows(data_path, csv_root, "val")
    if (cfg.AUG.MIXUP or cfg.AUG.CUTMIX) and cfg.DATA.BATCH_SIZE % 2:
        raise ValueError("AUG.MIXUP/CUTMIX need an even DATA.BATCH_SIZE")
    train_loader = build_loader(train_rows, TrainTransform(cfg), cfg.DATA.BATCH_SIZE, ctx, cfg, train=True,
                                seed=cfg.SEED, prefetch=cfg.DATA.PREFETCH_FACTOR)
    if len(train_loader) == 0:
        raise ValueError(f"{data_path}: {len(train_rows)} training rows, fewer than one batch of {cfg.DATA.BATCH_SIZE}")
    val_loader = build_loader(val_rows, EvalTransform(cfg.DATA.IMG_SIZE), cfg.DATA.VAL_BATCH_SIZE, ctx, cfg,
                              train=False, collate=collate_list, prefetch=cfg.DATA.VAL_PREFETCH_FACTOR)

    model = build_cls_model(cfg).to(ctx.device)
    init_weights(model, cfg)
    run.write_config(cfg_to_dict(cfg))  # config, data and weights validated

    optimizer = build_optimizer(cfg, model)
    step = OptimStep(optimizer, device=ctx.device, trailing=cfg.TRAIN.ACCUMULATION_RULE,
                     **step_options(shared_train_knobs(cfg)))
    loss_fn, mixup = build_loss(cfg), build_mixup(cfg)
    t = cfg.TRAIN
    steps_per_epoch = step.steps_per_epoch(len(train_loader))

    def schedule(optimizer_step: int) -> float:
        return lr_at(optimizer_step, t.EPOCHS * steps_per_epoch, t.WARMUP_EPOCHS * steps_per_epoch, t.BASE_LR,
                     t.WARMUP_LR, t.MIN_LR)

    state = TrainState(models={"model": model}, optimizers={"model": optimizer}, steppers={"model": step})
    resumed = run.resume(state)
    best_auc = resumed.extra["best_val_auc"] if resumed else -1.0

    net, stage = model, None
    for epoch in range(run.start_epoch, t.EPOCHS):
        new_stage = apply_training_stage(model, optimizer, epoch, cfg)
        if new_stage != stage:  # DDP registers the parameters that require gradients when it wraps the model
            stage, net = new_stage, wrap_model(model, ctx)
            step.model = net
        set_loader_epoch(train_loader, cfg.SEED, epoch)
        row = train_one_epoch(net, train_loader, step, loss_fn, mixup, cfg, ctx, epoch, schedule)
        scores, labels = predict(model, val_loader, ctx, cfg)
        check_finite_outputs(torch.from_numpy(scores), epoch + 1)
        val = binary_metrics(labels, scores)
        row |= {"stage": stage, "val_auc": val["auc"], "val_ap": val["ap"], "val_acc": val["acc"],
                "lr": optimizer.param_groups[-1]["lr"], "steps": step.optimizer_steps}
        val_auc = val["auc"] if val["auc"] is not None else -1.0
        if val_auc > best_auc:
            best_auc = val_auc
            if ctx.is_main:  # the export is written before the epoch's run state (re-created if the epoch re-runs)
                save_checkpoint({"model": model.state_dict(), "epoch": epoch + 1, "config": cfg_to_dict(cfg)},
                                run_dir / BEST)
        run.end_epoch(state, row, extra={"best_val_auc": best_auc})
    apply_training_stage(model, optimizer, t.EPOCHS, cfg)
    run.close()

    if (run_dir / BEST).is_file():
        load_state_dict_checked(model, load_checkpoint_file(run_dir / BEST)["model"], source=str(run_dir / BEST))
    if t.EVAL_TRAIN_IMAGES > 0:
        pick = np.random.default_rng(cfg.SEED).permutation(len(train_rows))[:t.EVAL_TRAIN_IMAGES]
        fit = evaluate_rows(model, [train_rows[i] for i in sorted(pick)], ctx, cfg, batch_size=cfg.DATA.VAL_BATCH_SIZE)
        fit = {k: v for k, v in fit.items() if k not in ("scores", "labels")}
        if ctx.is_main:
            (run_dir / TRAIN_EVAL).write_text(json.dumps(fit) + "\n")
    results = evaluate_csvs(model, test_csvs, test_csv_roots, ctx, cfg, run_dir, cfg.TAG) if test_csvs else {}
    cleanup_distributed()
    return model, (results if ctx.is_main else {})
