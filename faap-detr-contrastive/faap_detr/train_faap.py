"""FAAP generator training against the frozen DETR (`train`), on the common_utils engine.

One OptimStep per optimizer (generator + projection head; the discriminator for the adversarial method), run state
in `run_dir/last.pth` (RunDir + TrainState). Each epoch the generator is validated on `data.val_split` (per-gender
person AP, the M-F gap, against the unperturbed detector) and the design's epoch file is exported to
`checkpoints/epoch_XXXX.pth`; the epoch chosen on validation is also exported to `checkpoints/best.pth`."""
import json
import logging

from common_utils.data import SubgroupBalancedBatchSampler
from common_utils.train import (
    OptimStep,
    RunDir,
    RunStateError,
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
from omegaconf import OmegaConf

from .datasets.gender_coco import GENDERS, GenderCocoDataset, collate, dataset_layout
from .engine import train_faap_epoch
from .evaluate import PERSON, gap_summary, image_evals, predict, scores_finite
from .losses.objective import build as build_objective
from .models.detr import FrozenDETR, build, load_detr_checkpoint
from .models.discriminator import GenderDiscriminator
from .models.generator import PerturbationGenerator, generator_export, linf_bound
from .models.projection_head import ProjectionHead
from .schedules import scheduled_epsilon

log = logging.getLogger("faap_detr")
BUDGET_KEYS = ("epsilon", "generator")  # config sections a resumed run must not change


def build_frozen_detr(cfg):
    """The detector FAAP perturbs: `build(cfg)` + the official-checkpoint loader, frozen. -> (detr, criterion,
    postprocessor)."""
    model, criterion, postprocessor = build(cfg)
    if cfg.detr.checkpoint:
        load_detr_checkpoint(model, cfg.detr.checkpoint)
        log.info("DETR weights loaded from %s", cfg.detr.checkpoint)
    else:
        log.warning("detr.checkpoint is null: the frozen DETR is randomly initialised")
    return FrozenDETR(model), criterion, postprocessor


def epoch_epsilon(cfg, epoch):
    """The design's epsilon schedule (in `epsilon.units`) for `epoch`."""
    e = cfg.epsilon
    return scheduled_epsilon(epoch, e.start, e.peak, e.min, e.warmup_epochs, e.hold_epochs, e.cooldown_epochs)


def validate(detr, postprocessor, val_sets, ctx, cfg, generator=None):
    """Per-gender person AP/AR on the val split (sharded inference) -> ({gender: {AP, AR100}}, gaps)."""
    results = {}
    for g, ds in val_sets.items():
        results[g] = predict(detr, postprocessor, ds, ctx, cfg.eval.batch_size, generator, cfg.generator.space,
                             cfg.epsilon.units, cfg.train.precision)[0]
    return gap_summary(image_evals({g: ds.coco[g] for g, ds in val_sets.items()}, results, [PERSON], ctx)), results


def selection_key(per, gaps, base_per, max_drop):
    """Lower is better: epochs where no gender's AP falls more than `max_drop` below the baseline rank by their
    AP gap; the others after them, by how far they break that limit."""
    drop = max(base_per[g]["AP"] - per[g]["AP"] for g in GENDERS)
    return [max(0.0, drop - max_drop), gaps["AP"]]


def _check_budget(resumed, cfg):
    if resumed is None:
        return
    now = OmegaConf.to_container(cfg, resolve=True)
    for key in BUDGET_KEYS:
        if resumed.config.get(key) != now[key]:
            raise RunStateError(f"{resumed.path} was trained with {key}={resumed.config.get(key)} but the config "
                                f"now says {now[key]}; resume with the original values or start a new run_dir")


def train_faap(cfg, resume=None, overwrite=False):
    ctx = init_distributed(cfg.device)
    run = RunDir(cfg.run_dir, ctx, resume=resume, overwrite=overwrite)
    seed_everything(cfg.seed)
    data = dict(image_size=cfg.data.image_size, max_size=cfg.data.max_size)
    dataset = GenderCocoDataset(cfg.data.root, cfg.data.train_split, **data)
    val_sets = {g: GenderCocoDataset(cfg.data.root, cfg.data.val_split, (g,), **data) for g in GENDERS}
    linf_bound(cfg.epsilon.start, cfg.epsilon.units, cfg.generator.space)  # validates units and space
    detr, criterion, postprocessor = build_frozen_detr(cfg)
    detr.to(ctx.device)
    objective = build_objective(cfg, criterion.to(ctx.device))
    run.write_config(cfg)
    if ctx.is_main:
        (run.path / "dataset_layout.json").write_text(json.dumps(dataset_layout(cfg.data.root), indent=2))

    tc = cfg.train
    generator = PerturbationGenerator(cfg.generator.base_channels, cfg.epsilon.start)
    proj_head = ProjectionHead(cfg.detr.hidden_dim, cfg.projection.hidden_dim, cfg.projection.output_dim)
    gen_m = wrap_model(generator, ctx, channels_last=tc.channels_last, compile=tc.compile)
    models = {"generator": generator, "proj_head": proj_head.to(ctx.device)}
    params = list(generator.parameters())
    head_m = disc_m = None
    if cfg.method == "contrastive":
        params += list(proj_head.parameters())
        head_m = wrap_model(proj_head, ctx)
    opt_g = adamw(params, lr=tc.lr, weight_decay=tc.weight_decay)
    steps = {"generator": OptimStep(opt_g, device=ctx.device, model=gen_m, name="generator", **step_options(tc))}
    optimizers = {"generator": opt_g}
    if cfg.method == "adversarial":
        discriminator = GenderDiscriminator(cfg.detr.hidden_dim)
        disc_m = wrap_model(discriminator, ctx)
        models["discriminator"] = discriminator
        optimizers["discriminator"] = adamw(discriminator.parameters(), lr=tc.lr_d, weight_decay=tc.weight_decay)
        steps["discriminator"] = OptimStep(optimizers["discriminator"], device=ctx.device, model=disc_m,
                                           name="discriminator", **step_options(tc))
    state = TrainState(models=models, optimizers=optimizers, steppers=steps)
    resumed = run.resume(state)
    _check_budget(resumed, cfg)

    sampler = SubgroupBalancedBatchSampler(dataset.genders, tc.batch_size, tc.batches_per_epoch, seed=cfg.seed,
                                           rank=ctx.rank, world_size=ctx.world_size)
    loader = build_loader(dataset, tc.batch_size, ctx, batch_sampler=sampler, collate_fn=collate,
                          num_workers=cfg.data.num_workers)
    (base_per, base_gaps), _ = validate(detr, postprocessor, val_sets, ctx, cfg)
    best = resumed.extra.get("best") if resumed else None
    config = OmegaConf.to_container(cfg, resolve=True)
    for epoch in range(run.start_epoch, tc.epochs):
        eps = epoch_epsilon(cfg, epoch)
        generator.epsilon = linf_bound(eps, cfg.epsilon.units, cfg.generator.space)
        sampler.set_epoch(epoch)
        metrics = train_faap_epoch(epoch, loader, detr, gen_m, objective, steps, ctx, cfg.generator.space,
                                   cfg.epsilon.units, proj_head=head_m, discriminator=disc_m,
                                   channels_last=tc.channels_last)
        generator.eval()
        (per, gaps), results = validate(detr, postprocessor, val_sets, ctx, cfg, generator)
        for g in GENDERS:
            check_finite_outputs(scores_finite(results[g]), epoch + 1, "validation detections")
        row = {"epsilon": eps, **objective.weights(epoch), **metrics,
               **{f"val_AP_{g}": per[g]["AP"] for g in GENDERS}, **{f"val_AR100_{g}": per[g]["AR100"] for g in GENDERS},
               "val_AP_gap": gaps["AP"], "val_AP_gap_baseline": base_gaps["AP"],
               **{f"val_AP_{g}_baseline": base_per[g]["AP"] for g in GENDERS}}
        key = selection_key(per, gaps, base_per, cfg.validation.max_ap_drop)
        export = generator_export(generator, proj_head, opt_g, config, epoch + 1, eps, cfg.epsilon.units,
                                  cfg.generator.space, val=row)
        if "discriminator" in models:
            export.update(discriminator=models["discriminator"].state_dict(),
                          opt_d=optimizers["discriminator"].state_dict())
        if ctx.is_main:  # exports before the run state of the epoch
            save_checkpoint(export, run.path / "checkpoints" / f"epoch_{epoch:04d}.pth")
            if best is None or key < best["key"]:
                save_checkpoint(export, run.path / "checkpoints" / "best.pth")
        if best is None or key < best["key"]:
            best = {"key": key, "epoch": epoch + 1, "val_AP_gap": gaps["AP"]}
        row["best_epoch"] = best["epoch"]
        run.end_epoch(state, row, extra={"best": best})
    run.close()
    cleanup_distributed()
    return run.path
