"""Supervised DETR training on the gender data (`train-detr`): gives the demo a detector to freeze.

Runs in `run_dir/detr/` on the common_utils engine (RunDir, TrainState, OptimStep). With `detr_train.lr_backbone: 0`
the backbone is frozen and its features are computed once and cached (upstream DETR trains with a frozen backbone
when its learning rate is 0). After the last epoch the weights are exported in the official release layout
(`detr.pth` = {'model': state_dict}), the file `detr.checkpoint` reads through the official-checkpoint loader."""
import logging
from pathlib import Path

import torch
from common_utils.train import (
    OptimStep,
    RunDir,
    TrainState,
    adamw,
    build_loader,
    check_finite_outputs,
    cleanup_distributed,
    init_distributed,
    save_checkpoint,
    seed_everything,
    step_options,
    wrap_model,
)
from torch.utils.data import DistributedSampler

from .datasets.gender_coco import GENDERS, GenderCocoDataset, RandomHFlip, collate
from .engine import backbone_features, cached_batches, pad_features, train_detr_cached_epoch, train_detr_epoch
from .evaluate import PERSON, merged_gt, predict, scores_finite
from .models.detr import build

log = logging.getLogger("faap_detr")


@torch.no_grad()
def cached_predictions(model, postprocessor, feats, targets, batch_size):
    """COCO results from cached backbone features (the frozen-backbone validation path)."""
    from torchvision.ops import box_convert

    model.eval()
    results = []
    for s in range(0, len(feats), batch_size):
        f, m = pad_features(feats[s:s + batch_size])
        tg = targets[s:s + batch_size]
        out = model.forward_features(f, m)
        for t, det in zip(tg, postprocessor(out, torch.stack([t["orig_size"] for t in tg]).to(f.device))):
            xywh = box_convert(det["boxes"], "xyxy", "xywh").tolist()
            for sc, lab, box in zip(det["scores"].tolist(), det["labels"].tolist(), xywh):
                results.append({"image_id": t["image_id"], "category_id": lab, "bbox": box, "score": sc})
    return results


def validation_ap(results, val_set, epoch):
    """Person AP@[.5:.95] / AR@100 of `results` on the whole val split and per gender."""
    from common_utils.metrics import coco_ap_ar

    check_finite_outputs(scores_finite(results), epoch, "validation detections")
    row = {}
    pooled = coco_ap_ar(merged_gt(val_set.coco), results, [PERSON])
    row["val_AP"], row["val_AR100"] = pooled["AP"], pooled["AR100"]
    for g in GENDERS:
        ids = {im["id"] for im in val_set.coco[g]["images"]}
        stats = coco_ap_ar(val_set.coco[g], [r for r in results if r["image_id"] in ids], [PERSON])
        row[f"val_AP_{g}"] = stats["AP"]
    return row


def train_detr(cfg, resume=None, overwrite=False):
    """Train DETR on `data.train_split`; validation AP on `data.val_split` every `detr_train.eval_every` epochs.

    Returns the path of the exported official-format checkpoint."""
    ctx = init_distributed(cfg.device)
    run = RunDir(Path(cfg.run_dir) / "detr", ctx, resume=resume, overwrite=overwrite)
    seed_everything(cfg.seed)
    data = dict(image_size=cfg.data.image_size, max_size=cfg.data.max_size)
    dataset = GenderCocoDataset(cfg.data.root, cfg.data.train_split, **data)
    val_set = GenderCocoDataset(cfg.data.root, cfg.data.val_split, **data)
    dt = cfg.detr_train
    model, criterion, postprocessor = build(cfg)
    model.to(ctx.device)
    criterion.to(ctx.device)
    frozen = dt.lr_backbone <= 0
    if frozen:  # upstream: lr_backbone 0 freezes the backbone; no backward pass through it
        model.backbone.requires_grad_(False)
    run.write_config(cfg)
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    groups = [{"params": head}]
    if not frozen:
        groups.append({"params": [p for n, p in model.named_parameters() if n.startswith("backbone.")
                                  and p.requires_grad], "lr": dt.lr_backbone})
    optimizer = adamw(groups, lr=dt.lr, weight_decay=dt.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, dt.lr_drop) if dt.lr_drop > 0 else None
    if frozen:
        net = model
        feats, targets = backbone_features(model, dataset, ctx.device, flip=dt.hflip)
        val_feats, val_targets = backbone_features(model, val_set, ctx.device)
    else:
        net = wrap_model(model, ctx)
        sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed)
        loader = build_loader(RandomHFlip(dataset) if dt.hflip else dataset, dt.batch_size, ctx, sampler=sampler,
                              collate_fn=collate, num_workers=cfg.data.num_workers)
    step = OptimStep(optimizer, device=ctx.device, model=None if frozen else net, name="detr", **step_options(dt))
    state = TrainState(models={"model": model}, optimizers={"model": optimizer}, steppers={"model": step},
                       schedulers={"model": scheduler} if scheduler is not None else {})
    run.resume(state)
    export = run.path / "detr.pth"
    for epoch in range(run.start_epoch, dt.epochs):
        if frozen:
            batches = cached_batches(len(dataset), dt.batch_size, cfg.seed, epoch, 2 if dt.hflip else 1)
            row = train_detr_cached_epoch(epoch, batches, model, criterion, step, feats, targets, ctx)
        else:
            sampler.set_epoch(epoch)
            row = train_detr_epoch(epoch, loader, net, criterion, step, ctx)
        if scheduler is not None:
            scheduler.step()
        last = epoch + 1 == dt.epochs
        if (epoch + 1) % dt.eval_every == 0 or last:
            if frozen:
                results = cached_predictions(model, postprocessor, val_feats, val_targets, cfg.eval.batch_size)
            else:
                model.eval()
                results = predict(model, postprocessor, val_set, ctx, cfg.eval.batch_size,
                                  precision=dt.precision)[0]
            row.update(validation_ap(results, val_set, epoch + 1))
        if last and ctx.is_main:  # the export of the final epoch, before its run state
            save_checkpoint({"model": model.state_dict()}, export)
        run.end_epoch(state, row)
    run.close()
    cleanup_distributed()
    return export
