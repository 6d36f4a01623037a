"""Contrastive pre-training of a small open_clip model on captioned images: the demo's stand-in for CLIP's web
pre-training, so that the frozen backbone both stages read carries what a pretrained one does (demographics, content,
image quality), learnt from captions that name them.

Input: an open_clip CSV (``data.captions``: ``filepath`` and ``title`` columns, tab-separated, as open_clip's
``--csv-img-key/--csv-caption-key`` read it; paths relative to ``data.root``). Loss: open_clip's ``ClipLoss``
(symmetric image-text InfoNCE with the learned temperature, clamped at 100 as open_clip does). Run state ``last.pth``;
export ``<run_dir>/open_clip/`` = ``open_clip_config.json`` + ``open_clip_model.safetensors`` (the layout open_clip
publishes), which both stages load through their CLIP loader as ``clip.name: local-dir:<run_dir>/open_clip``.
"""
from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import open_clip
import torch
from common_utils.data import DataFormatError, load_image
from common_utils.train import (
    OptimStep,
    RunDir,
    TrainState,
    adamw,
    all_reduce_mean,
    build_loader,
    cleanup_distributed,
    init_distributed,
    seed_everything,
    step_options,
    wrap_model,
)
from safetensors.torch import save_file
from torch.utils.data import Dataset, DistributedSampler

from ..model import CLIP_MEAN, CLIP_STD
from ..model.clip_backbone import register_model_config

EXPORT = "open_clip"


def read_captions(path: Path, root: Path, img_key: str, caption_key: str, separator: str) -> list[tuple[Path, str]]:
    """(image path, caption) pairs of an open_clip CSV; a missing column or image is an error naming the line."""
    if not path.is_file():
        raise DataFormatError(path, "caption file not found")
    pairs = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=separator)
        missing = [k for k in (img_key, caption_key) if k not in (reader.fieldnames or [])]
        if missing:
            raise DataFormatError(path, f"missing column(s) {missing}; header is {reader.fieldnames} (separator "
                                  f"{separator!r})", line=1)
        for row in reader:
            img = root / row[img_key]
            if not img.is_file():
                raise DataFormatError(path, f"listed image not found: {img}", line=reader.line_num)
            pairs.append((img, row[caption_key]))
    if not pairs:
        raise DataFormatError(path, "no captioned images")
    return pairs


class CaptionDataset(Dataset):
    """Captioned images, decoded once into memory (uint8) with their token ids. Items: (image [3,S,S] normalised with
    CLIP mean/std, tokens [context_length])."""

    def __init__(self, pairs: list[tuple[Path, str]], tokenizer, image_size: int):
        images = []
        for path, _ in pairs:
            img = load_image(path).convert("RGB")
            if img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), resample=3)  # bicubic
            images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
        self.images = torch.stack(images)
        self.tokens = tokenizer([caption for _, caption in pairs])
        self.mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return (self.images[i].float() / 255 - self.mean) / self.std, self.tokens[i]


def export_open_clip(model, name: str, folder: Path) -> Path:
    """Write ``model`` as an open_clip folder: ``open_clip_config.json`` (model and preprocessing config) and
    ``open_clip_model.safetensors``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": copy.deepcopy(open_clip.get_model_config(name)),
              "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic",
                                 "resize_mode": "shortest"}}
    tmp = folder / ".open_clip_config.json.tmp"
    tmp.write_text(json.dumps(config, indent=1))
    tmp.replace(folder / "open_clip_config.json")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    return folder


def train(cfg, resume: str | None = None, overwrite: bool = False) -> Path:
    """Pre-train the configured open_clip model; returns the run directory (``last.pth``, ``open_clip/``)."""
    ctx = init_distributed(cfg.device)
    run = RunDir(cfg.run_dir, ctx, resume=resume, overwrite=overwrite)
    seed_everything(cfg.seed)
    register_model_config(cfg.clip.model_config)
    if cfg.clip.name not in open_clip.list_models():
        raise ValueError(f"clip.name '{cfg.clip.name}' is not an open_clip model; give clip.model_config")
    model = open_clip.create_model(cfg.clip.name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(cfg.clip.name)
    d = cfg.data
    pairs = read_captions(Path(d.root) / d.captions, Path(d.root), d.img_key, d.caption_key, d.separator)
    ds = CaptionDataset(pairs, tokenizer, cfg.clip.image_size)
    t = cfg.train
    sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    loader = build_loader(ds, t.batch_size, ctx, sampler=sampler, drop_last=True, num_workers=d.num_workers)
    run.write_config(cfg)

    net = wrap_model(model, ctx, compile=t.compile)
    optimizer = adamw(model.parameters(), lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs, eta_min=t.lr * 0.01)
    step = OptimStep(optimizer, device=ctx.device, model=net, **step_options(t))
    loss_fn = open_clip.ClipLoss(gather_with_grad=True, rank=ctx.rank, world_size=ctx.world_size)
    state = TrainState(models={"model": model}, optimizers={"model": optimizer}, schedulers={"model": scheduler},
                       steppers={"model": step})
    run.resume(state)

    for epoch in range(run.start_epoch, t.epochs):
        sampler.set_epoch(epoch)
        net.train()
        step.begin_epoch(epoch, len(loader))
        loss_sum, hits, seen = torch.zeros(()), torch.zeros(()), 0
        for images, tokens in loader:
            images, tokens = images.to(ctx.device), tokens.to(ctx.device)
            with step.autocast():
                img, txt, logit_scale = net(images, tokens)[:3]
            loss = loss_fn(img.float(), txt.float(), logit_scale.float())
            step(loss)
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
                hits += ((img @ txt.T).argmax(1) == torch.arange(len(img), device=img.device)).sum().cpu()
            loss_sum += loss.detach().cpu()
            seen += len(img)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        row = {"train/loss": float(all_reduce_mean(loss_sum / len(loader))),
               "train/image_to_text_top1": float(all_reduce_mean(hits / seen)), "train/lr": lr,
               "train/logit_scale": float(model.logit_scale.detach().exp())}
        if ctx.is_main:
            export_open_clip(model, cfg.clip.name, run.path / EXPORT)
        run.end_epoch(state, row)
    run.close()
    cleanup_distributed()
    return run.path
