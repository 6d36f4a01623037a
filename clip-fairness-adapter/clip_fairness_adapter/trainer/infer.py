"""Inference on a folder of images with a trained Stage 2 model -> CSV ``img_path,prob_fake,pred_fake``."""
from __future__ import annotations

import csv
from pathlib import Path

from common_utils.data import FairnessRow
from common_utils.train import init_distributed

from ..dataset import NO_LABEL, UNKNOWN, FairnessImageDataset, clip_transform, folder_images
from ..model import build_encoder, load_trained
from .common import eval_loader
from .evaluate import predict


def run_inference(cfg, checkpoint: str | Path, input_dir: str | Path, out_csv: str | Path) -> Path:
    """Score every image under ``input_dir`` (recursive) with the Stage 2 model of ``checkpoint``; ``pred_fake`` is
    ``prob_fake >= eval.threshold``. Writes and returns ``out_csv``."""
    ctx = init_distributed(cfg.device)
    encoder = build_encoder(cfg.clip, ctx.device)
    model = load_trained(cfg, encoder, checkpoint, ctx.device)
    images = folder_images(input_dir)
    rows = [FairnessRow(p, NO_LABEL, UNKNOWN, UNKNOWN, UNKNOWN, 0) for p in images]
    pred = predict(model, eval_loader(FairnessImageDataset(rows, clip_transform(cfg.clip.image_size)), cfg, ctx),
                   ctx.device)
    out_csv = Path(out_csv)
    if ctx.is_main:
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        with open(out_csv, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["img_path", "prob_fake", "pred_fake"])
            for path, prob in zip(images, pred["prob"]):
                writer.writerow([str(path), f"{prob:.6f}", int(prob >= cfg.eval.threshold)])
    return out_csv
