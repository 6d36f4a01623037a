"""MFM pre-training of SPAI's ViT on real images (``python -m spai pretrain-mfm``), on the shared engine.

As the MFM repository's ``main_mfm.py``: each real training image (class 0 of a SPAI CSV's split ``train``; MFM
used ImageNet) is cropped to ``DATA.IMG_SIZE``, flipped, low- or high-pass filtered, and the ViT learns to restore
the removed frequencies. The run directory holds the run state (``last.pth``, ``metrics.jsonl``, ``config.yaml``)
and the export ``mfm_pretrain.pth`` in the MFM checkpoint format (``model`` with ``encoder.*``/``decoder.*`` keys,
``epoch``, ``config`` as a yacs CfgNode), which ``train`` reads through the MFM key map (``PRETRAINED``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from common_utils.train import (
    OptimStep,
    RunDir,
    TrainState,
    all_reduce_mean,
    check_finite_outputs,
    cleanup_distributed,
    init_distributed,
    progress,
    save_checkpoint,
    seed_everything,
    step_options,
    wrap_model,
)

from .config import shared_train_knobs
from .data import build_loader, read_rows, set_loader_epoch
from .engine import cfg_to_dict
from .lr_scheduler import lr_at, set_lr
from .models import mfm
from .optimizer import build_optimizer

log = logging.getLogger(__name__)

MFM_EXPORT = "mfm_pretrain.pth"


class MFMTransform:
    """PIL -> ([3, S, S] in [0, 1], low_pass): RandomResizedCrop (area DATA.MIN_CROP_SCALE-1, bicubic) or, with
    MIN_CROP_SCALE 1, a native-scale random crop; horizontal flip; low-pass with probability DATA.SAMPLE_RATIO."""

    def __init__(self, cfg):
        size, scale = cfg.DATA.IMG_SIZE, cfg.DATA.MIN_CROP_SCALE
        crop = (T.RandomResizedCrop(size, scale=(scale, 1.0), interpolation=T.InterpolationMode.BICUBIC,
                                    antialias=True) if scale < 1 else
                T.RandomCrop(size, pad_if_needed=True, padding_mode="reflect"))
        self.transform = T.Compose([T.PILToTensor(), crop, T.RandomHorizontalFlip(),
                                    T.ToDtype(torch.float32, scale=True)])
        self.sample_ratio = cfg.DATA.SAMPLE_RATIO

    def __call__(self, img):
        return self.transform(img), bool(torch.rand(()) < self.sample_ratio)


class MFMEvalTransform:
    """Validation: centre crop (zero-padded if smaller); the mask type alternates with the row index."""

    def __init__(self, cfg):
        self.size = cfg.DATA.IMG_SIZE

    def __call__(self, img):
        x = TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)
        return TF.center_crop(x, [self.size, self.size])


def _collate_train(batch):
    samples = [sample for sample, _, _ in batch]  # (image, low_pass) from MFMTransform
    return torch.stack([image for image, _ in samples]), torch.tensor([low for _, low in samples])


def _collate_val(batch):
    images, _, idx = zip(*batch)
    return torch.stack(images), torch.tensor([i % 2 == 0 for i in idx])


def write_mfm_checkpoint(model: mfm.MFMPretrainModel, path: Path, epoch: int, cfg) -> Path:
    """The MFM repository's checkpoint layout: ``model`` (encoder.* / decoder.*), ``epoch``, ``config`` (CfgNode)."""
    return save_checkpoint({"model": model.state_dict(), "epoch": epoch, "config": cfg.clone()}, path)


def real_rows(data_path, csv_root, split: str):
    rows = [r for r in read_rows(data_path, csv_root, split) if r.label == 0]
    if not rows:
        raise ValueError(f"{data_path}: no real (class 0) rows in split {split!r} to pre-train on")
    return rows


@torch.no_grad()
def validation_loss(model, loader, ctx, epoch: int) -> float:
    model.eval()
    losses = torch.stack([model(x.to(ctx.device), low.to(ctx.device)) for x, low in loader])
    check_finite_outputs(losses, epoch, what="MFM validation losses")
    return float(all_reduce_mean(losses.mean()))


def pretrain_mfm(cfg, data_path, csv_root=None, resume=None, output=None, overwrite=False) -> Path:
    """Pre-train and return the path of the MFM-format export."""
    ctx = init_distributed(cfg.DEVICE)
    run_dir = Path(output or cfg.OUTPUT)
    run = RunDir(run_dir, ctx, resume=resume, overwrite=overwrite)
    seed_everything(cfg.SEED + ctx.rank)
    train_rows, val_rows = real_rows(data_path, csv_root, "train"), real_rows(data_path, csv_root, "val")
    loader = build_loader(train_rows, MFMTransform(cfg), cfg.DATA.BATCH_SIZE, ctx, cfg, train=True, seed=cfg.SEED,
                          collate=_collate_train, prefetch=cfg.DATA.PREFETCH_FACTOR)
    if len(loader) == 0:
        raise ValueError(f"{data_path}: {len(train_rows)} real training rows, fewer than one batch of "
                         f"{cfg.DATA.BATCH_SIZE}")
    val_loader = build_loader(val_rows, MFMEvalTransform(cfg), cfg.DATA.VAL_BATCH_SIZE, ctx, cfg, train=False,
                              collate=_collate_val)
    model = mfm.build(cfg).to(ctx.device)
    run.write_config(cfg_to_dict(cfg))

    optimizer = build_optimizer(cfg, model)
    step = OptimStep(optimizer, device=ctx.device, trailing=cfg.TRAIN.ACCUMULATION_RULE,
                     **step_options(shared_train_knobs(cfg)))
    t = cfg.TRAIN
    steps_per_epoch = step.steps_per_epoch(len(loader))
    state = TrainState(models={"model": model}, optimizers={"model": optimizer}, steppers={"model": step})
    run.resume(state)
    net = step.model = wrap_model(model, ctx)

    for epoch in range(run.start_epoch, t.EPOCHS):
        set_loader_epoch(loader, cfg.SEED, epoch)
        net.train()
        step.begin_epoch(epoch, len(loader))
        total = torch.zeros(())
        for x, low_pass in progress(loader, desc=f"mfm {epoch + 1}", enabled=ctx.is_main):
            if step.will_step:
                set_lr(optimizer, lr_at(step.optimizer_steps, t.EPOCHS * steps_per_epoch,
                                        t.WARMUP_EPOCHS * steps_per_epoch, t.BASE_LR, t.WARMUP_LR, t.MIN_LR))
            with step.autocast():
                loss = net(x.to(ctx.device), low_pass.to(ctx.device))
            total += step(loss)["loss"]
        row = {"train_loss": float(all_reduce_mean(total / len(loader))),
               "val_loss": validation_loss(model, val_loader, ctx, epoch + 1),
               "lr": optimizer.param_groups[-1]["lr"], "steps": step.optimizer_steps}
        if ctx.is_main:  # the export first, then the run state of the epoch
            write_mfm_checkpoint(model, run_dir / MFM_EXPORT, epoch + 1, cfg)
        run.end_epoch(state, row)
    run.close()
    cleanup_distributed()
    return run_dir / MFM_EXPORT
