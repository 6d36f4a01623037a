"""CLI: `python -m faap_detr train|eval|train-detr|make-gender-split` (wiring only; loops live in engine.py)."""
import argparse
import json
import logging
from pathlib import Path

import torch
from common_utils.data import SubgroupBalancedBatchSampler
from common_utils.metrics import coco_ap_ar
from common_utils.train import (
    MetricLogger,
    barrier,
    capture_rng_state,
    cleanup_distributed,
    init_distributed,
    load_checkpoint,
    load_config,
    load_state_dict_strict,
    make_grad_scaler,
    parse_args_with_overrides,
    prepare_run_dir,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler

from .datasets.gender_coco import GENDERS, GenderCocoDataset, collate, dataset_layout
from .datasets.make_gender_split import make_gender_split
from .engine import backbone_features, predict, train_detr_cached_epoch, train_detr_epoch, train_faap_epoch
from .losses.contrastive import AdaptiveScoreContrastiveLoss, BidirectionalScoreContrastiveLoss
from .losses.criterion import SetCriterion
from .models.detr import FrozenDETR, build_detr, load_detr_checkpoint
from .models.discriminator import GenderDiscriminator
from .models.generator import PerturbationGenerator
from .models.matcher import HungarianMatcher
from .models.projection_head import ProjectionHead
from .report import gender_table, save_perturbation_figure, write_report
from .schedules import contrastive_warmup_weight, scheduled_beta, scheduled_epsilon

log = logging.getLogger("faap_detr")
SCHEMA = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def load_cfg(path, overrides=()):
    return load_config(path, SCHEMA, overrides)


def _device_arg(cfg):
    return None if cfg.device == "auto" else cfg.device


def build_criterion(cfg):
    lc = cfg.loss
    matcher = HungarianMatcher(lc.set_cost_class, lc.set_cost_bbox, lc.set_cost_giou)
    weights = {"loss_ce": lc.ce_loss_coef, "loss_bbox": lc.bbox_loss_coef, "loss_giou": lc.giou_loss_coef}
    return SetCriterion(cfg.detr.num_classes, matcher, weights, lc.eos_coef, lc.aux_loss)


def build_frozen_detr(cfg):
    detr = build_detr(OmegaConf.to_container(cfg.detr))
    if cfg.detr.checkpoint:
        load_detr_checkpoint(detr, cfg.detr.checkpoint)
        log.info("DETR weights loaded from %s", cfg.detr.checkpoint)
    else:
        log.warning("detr.checkpoint is null: the frozen DETR is randomly initialised")
    return FrozenDETR(detr)


def build_contrastive(cfg):
    lc = cfg.loss
    common = dict(temperature=lc.temperature, top_k_percent=lc.top_k_percent, bottom_k_percent=lc.bottom_k_percent,
                  min_samples=lc.min_samples, rounding=lc.count_rounding)
    if cfg.bidirectional:
        return BidirectionalScoreContrastiveLoss(anchor_weight=lc.anchor_weight, positive_weight=lc.positive_weight,
                                                 **common)
    return AdaptiveScoreContrastiveLoss(**common)


def epoch_schedule(cfg, epoch):
    """(epsilon, beta, contrastive weight) in force during `epoch`."""
    e = cfg.epsilon
    eps = scheduled_epsilon(epoch, e.start, e.peak, e.min, e.warmup_epochs, e.hold_epochs, e.cooldown_epochs)
    beta = scheduled_beta(epoch, cfg.train.epochs, cfg.loss.beta_start, cfg.loss.beta_end)
    return eps, beta, contrastive_warmup_weight(epoch, cfg.loss.contrastive_warmup_epochs)


def train(cfg, resume=None):
    """Train the perturbation generator against the frozen DETR; one checkpoint per epoch."""
    ctx = init_distributed(_device_arg(cfg))
    seed_everything(cfg.seed)
    run_dir = prepare_run_dir(cfg.run_dir, cfg, ctx.is_main)
    dataset = GenderCocoDataset(cfg.data.root, cfg.data.train_split, image_size=cfg.data.image_size,
                                max_size=cfg.data.max_size)
    if ctx.is_main:
        (run_dir / "config.json").write_text(json.dumps(OmegaConf.to_container(cfg, resolve=True), indent=2))
        (run_dir / "dataset_layout.json").write_text(json.dumps(dataset_layout(cfg.data.root), indent=2))
    detr = build_frozen_detr(cfg).to(ctx.device)
    criterion = build_criterion(cfg).to(ctx.device)
    generator = PerturbationGenerator(cfg.generator.base_channels, cfg.epsilon.start).to(ctx.device)
    proj_head = ProjectionHead(cfg.detr.hidden_dim, cfg.projection.hidden_dim, cfg.projection.output_dim).to(ctx.device)
    discriminator = opt_d = None
    params = list(generator.parameters())
    if cfg.method == "contrastive":
        params += list(proj_head.parameters())
    elif cfg.method == "adversarial":
        discriminator = GenderDiscriminator(cfg.detr.hidden_dim).to(ctx.device)
        opt_d = torch.optim.AdamW(discriminator.parameters(), lr=cfg.loss.lr_d, weight_decay=cfg.train.weight_decay)
    else:
        raise ValueError(f"method must be 'contrastive' or 'adversarial', got {cfg.method!r}")
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr_g, weight_decay=cfg.train.weight_decay)
    scaler = make_grad_scaler(cfg.train.precision, ctx.device)
    start_epoch = 0
    ckpt_path = resolve_resume(resume, run_dir / "checkpoints" / "last.pth")
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        generator.load_state_dict(ckpt["generator"])
        proj_head.load_state_dict(ckpt["proj_head"])
        optimizer.load_state_dict(ckpt["opt_g"])
        scaler.load_state_dict(ckpt["scaler"])
        if discriminator is not None:
            discriminator.load_state_dict(ckpt["discriminator"])
            opt_d.load_state_dict(ckpt["opt_d"])
        restore_rng_state(ckpt["rng"])
        start_epoch = ckpt["epoch"] + 1
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    sampler = SubgroupBalancedBatchSampler(dataset.genders, cfg.train.batch_size, cfg.train.batches_per_epoch,
                                           seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.data.num_workers)
    gen_m, proj_m, disc_m = generator, proj_head, discriminator
    if cfg.train.channels_last:
        generator.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        gen_m = torch.compile(generator)
    if ctx.distributed:
        gen_m = DDP(gen_m)
        proj_m = DDP(proj_head) if cfg.method == "contrastive" else proj_head
        disc_m = DDP(discriminator) if discriminator is not None else None
    contrastive = build_contrastive(cfg)
    logger = MetricLogger(run_dir, ctx.is_main)
    for epoch in range(start_epoch, cfg.train.epochs):
        eps, beta, w_con = epoch_schedule(cfg, epoch)
        generator.epsilon = eps
        sampler.set_epoch(epoch)
        metrics = train_faap_epoch(cfg, epoch, {"contrastive": w_con, "beta": beta}, detr, gen_m, proj_m, criterion,
                                   contrastive, optimizer, scaler, loader, ctx, disc_m, opt_d,
                                   step0=epoch * len(sampler))
        row = {"epoch": epoch, "epsilon": eps, "beta": beta, "contrastive_weight": w_con, **metrics}
        logger.log(epoch, row)
        if ctx.is_main:
            with open(run_dir / "train_log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            state = {"epoch": epoch, "epsilon": eps, "perturb_space": cfg.generator.space,
                     "generator": generator.state_dict(), "proj_head": proj_head.state_dict(),
                     "opt_g": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": capture_rng_state(),
                     "config": OmegaConf.to_container(cfg, resolve=True)}
            if discriminator is not None:
                state.update(discriminator=discriminator.state_dict(), opt_d=opt_d.state_dict())
            save_checkpoint(state, run_dir / "checkpoints" / f"epoch_{epoch:04d}.pth")
            save_checkpoint(state, run_dir / "checkpoints" / "last.pth")
        barrier()
    logger.close()
    cleanup_distributed()
    return run_dir


def load_generator(path, epsilon=None, space=None):
    """Generator from our checkpoint or the design's own (`generator` key, or a bare state dict).

    Returns (generator in eval mode, epsilon, space). Epsilon: `epsilon` if given, else the checkpoint's; the
    design's checkpoints store none, so they need `epsilon`. Their space is "normalized"."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("generator", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "out_conv.weight" not in state:
        raise ValueError(f"{path}: no generator state dict (expected key 'generator' or a bare state dict)")
    eps = epsilon if epsilon is not None else ckpt.get("epsilon")
    if eps is None:
        raise ValueError(f"{path}: checkpoint carries no epsilon (the design's own format); pass eval.epsilon=...")
    space = space or ckpt.get("perturb_space", "normalized")
    generator = PerturbationGenerator(state["down1.net.0.weight"].shape[0], float(eps))
    load_state_dict_strict(generator, state, str(path))
    return generator.eval(), float(eps), space


def evaluate(cfg, out_dir=None):
    """Per-gender COCO AP/AR, baseline vs perturbed; writes results.json, results.md and perturbation figures."""
    ctx = init_distributed(_device_arg(cfg))
    if not cfg.eval.checkpoint:
        raise ValueError("eval.checkpoint is not set (pass --checkpoint)")
    generator, eps, space = load_generator(cfg.eval.checkpoint, cfg.eval.epsilon)
    generator.to(ctx.device)
    detr = build_frozen_detr(cfg).to(ctx.device)
    out_dir = Path(out_dir or Path(cfg.run_dir) / f"eval_{cfg.data.eval_split}")
    cat_ids = None if cfg.eval.all_categories else [1]
    per_gender, figures = {}, []
    for gender in GENDERS:
        ds = GenderCocoDataset(cfg.data.root, cfg.data.eval_split, (gender,), cfg.data.image_size, cfg.data.max_size)
        loader = DataLoader(ds, batch_size=cfg.eval.batch_size, collate_fn=collate, num_workers=cfg.data.num_workers)
        gt = ds.coco[gender]
        base = coco_ap_ar(gt, predict(detr, loader, ctx.device), cat_ids)
        pert = coco_ap_ar(gt, predict(detr, loader, ctx.device, generator, space), cat_ids)
        per_gender[gender] = {"baseline": base, "perturbed": pert, "n_images": len(ds)}
        if ctx.is_main and cfg.eval.n_visualize > 0:
            figures.append(save_perturbation_figure(ds, generator, space, cfg.eval.n_visualize,
                                                    out_dir / f"perturbation_{gender}.png", ctx.device))
    results = {"checkpoint": str(cfg.eval.checkpoint), "epsilon": eps, "space": space,
               "split": cfg.data.eval_split, "categories": "all" if cat_ids is None else cat_ids,
               "per_gender": per_gender, "table": gender_table(per_gender),
               "figures": [str(f.relative_to(out_dir)) for f in figures]}
    if ctx.is_main:
        write_report(results, out_dir)
    cleanup_distributed()
    return results


def train_detr(cfg, resume=None):
    """Supervised DETR training on the gender data, in `run_dir/detr/`; writes `run_dir/detr/detr.pth` in the
    official format ({'model': state_dict})."""
    ctx = init_distributed(_device_arg(cfg))
    seed_everything(cfg.seed)
    run_dir = prepare_run_dir(Path(cfg.run_dir) / "detr", cfg, ctx.is_main)
    dataset = GenderCocoDataset(cfg.data.root, cfg.data.train_split, image_size=cfg.data.image_size,
                                max_size=cfg.data.max_size)
    model = build_detr(OmegaConf.to_container(cfg.detr)).to(ctx.device)
    criterion = build_criterion(cfg).to(ctx.device)
    dt = cfg.detr_train
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    groups = [{"params": [p for n, p in model.named_parameters() if not n.startswith("backbone.")]}]
    if dt.lr_backbone > 0:
        groups.append({"params": backbone, "lr": dt.lr_backbone})
    else:  # frozen backbone (upstream: lr_backbone 0); no backward pass through it
        model.backbone.requires_grad_(False)
    optimizer = torch.optim.AdamW(groups, lr=dt.lr, weight_decay=dt.weight_decay)
    scaler = make_grad_scaler(cfg.train.precision, ctx.device)
    start_epoch = 0
    ckpt_path = resolve_resume(resume, run_dir / "checkpoints" / "last.pth")
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        restore_rng_state(ckpt["rng"])
        start_epoch = ckpt["epoch"] + 1
    frozen_backbone = dt.lr_backbone <= 0
    if frozen_backbone:  # fixed images + frozen backbone: compute its features once
        feats, targets = backbone_features(model, dataset, ctx.device)
    else:
        sampler = DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed)
        loader = DataLoader(dataset, batch_size=dt.batch_size, sampler=sampler, collate_fn=collate,
                            num_workers=cfg.data.num_workers)
    net = DDP(model) if ctx.distributed and not frozen_backbone else model
    logger = MetricLogger(run_dir, ctx.is_main)
    for epoch in range(start_epoch, dt.epochs):
        if frozen_backbone:
            metrics = train_detr_cached_epoch(cfg, epoch, model, criterion, optimizer, feats, targets, ctx,
                                              epoch * len(feats))
        else:
            sampler.set_epoch(epoch)
            metrics = train_detr_epoch(cfg, epoch, net, criterion, optimizer, scaler, loader, ctx,
                                       epoch * len(loader))
        logger.log(epoch, {"epoch": epoch, **metrics})
        if ctx.is_main and ((epoch + 1) % dt.checkpoint_every == 0 or epoch + 1 == dt.epochs):
            save_checkpoint({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scaler": scaler.state_dict(), "rng": capture_rng_state(),
                             "config": OmegaConf.to_container(cfg, resolve=True)},
                            run_dir / "checkpoints" / "last.pth")
        barrier()
    if ctx.is_main:
        save_checkpoint({"model": model.state_dict()}, run_dir / "detr.pth")
    logger.close()
    cleanup_distributed()
    return run_dir / "detr.pth"


def build_parser():
    p = argparse.ArgumentParser(prog="python -m faap_detr", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--config", default=str(SCHEMA), help="YAML config (default: configs/default.yaml)")
        sp.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides `device`")
        sp.add_argument("overrides", nargs="*", help="dotted key=value config overrides")

    t = sub.add_parser("train", help="train the perturbation generator against the frozen DETR")
    common(t)
    t.add_argument("--bidirectional", action="store_true", help="BidirectionalScoreContrastiveLoss")
    t.add_argument("--method", choices=["contrastive", "adversarial"], help="overrides `method`")
    t.add_argument("--resume", help="checkpoint path, or 'auto' (= run_dir/checkpoints/last.pth if it exists)")
    e = sub.add_parser("eval", help="per-gender COCO AP/AR, baseline vs perturbed")
    common(e)
    e.add_argument("--checkpoint", help="generator checkpoint (overrides eval.checkpoint)")
    e.add_argument("--epsilon", type=float, help="overrides the checkpoint's epsilon")
    e.add_argument("--all-categories", action="store_true", help="evaluate every category, not only person")
    e.add_argument("--out", help="output folder (default run_dir/eval_<split>)")
    d = sub.add_parser("train-detr", help="train a DETR on the gender data (makes the demo's detector)")
    common(d)
    d.add_argument("--resume", help="checkpoint path or 'auto'")
    g = sub.add_parser("make-gender-split", help="gender-split COCO JSONs from COCO captions")
    g.add_argument("--captions", required=True, help="captions_<split>20xx.json")
    g.add_argument("--instances", required=True, help="instances_<split>20xx.json")
    g.add_argument("--out", required=True)
    g.add_argument("--split", required=True, help="name used in gender_{women,men}_<split>.json")
    g.add_argument("--image-dir", help="COCO image folder: symlink images into {women,men}_split/<split>/")
    g.add_argument("--person-only", action="store_true", help="keep only person (category 1) annotations")
    return p


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args_with_overrides(build_parser(), argv)  # overrides may follow the options (job files)
    if args.cmd == "make-gender-split":
        counts = make_gender_split(args.captions, args.instances, args.out, args.split, args.image_dir,
                                   args.person_only)
        layout = dataset_layout(args.out)
        layout.setdefault("caption_split_counts", {})[args.split] = counts
        (Path(args.out) / "dataset_layout.json").write_text(json.dumps(layout, indent=2))
        print(json.dumps(counts))
        return
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.cmd == "train":
        if args.bidirectional:
            overrides.append("bidirectional=true")
        if args.method:
            overrides.append(f"method={args.method}")
        train(load_cfg(args.config, overrides), args.resume)
    elif args.cmd == "eval":
        if args.checkpoint:
            overrides.append(f"eval.checkpoint={args.checkpoint}")
        if args.epsilon is not None:
            overrides.append(f"eval.epsilon={args.epsilon}")
        if args.all_categories:
            overrides.append("eval.all_categories=true")
        res = evaluate(load_cfg(args.config, overrides), args.out)
        print(json.dumps(res["table"], indent=2))
    elif args.cmd == "train-detr":
        print(train_detr(load_cfg(args.config, overrides), args.resume))
