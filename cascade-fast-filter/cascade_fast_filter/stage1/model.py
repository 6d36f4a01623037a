"""The fast filter: a timm backbone with one output logit (P(fake) = sigmoid(logit / T)), its cost and its reload.

``build(cfg.model)`` (bottom of the module) builds it; ``load_trained_model`` reloads a fine-tuned
``best_model.pth``; ``measure_gflops`` / ``measure_ms_per_image`` give its cost per image.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import timm
import torch
from common_utils.safe_load import read_state_dict
from common_utils.train import load_checkpoint, load_state_dict_strict
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode


def eval_size(cfg_model) -> int:
    """The size the model evaluates at: ``model.test_size`` (timm's test_input_size), else ``model.input_size``. A
    convolutional model with global pooling trained on crops can evaluate on larger views (more evidence, more cost)."""
    return int(cfg_model.get("test_size") or cfg_model.input_size)


def zero_head(model: torch.nn.Module) -> torch.nn.Module:
    """Zero the new 1-logit classifier: every image starts at P(fake) = 0.5 instead of timm's default head init
    (whose logits reach |z| ~ 10 on a random backbone)."""
    head = model.get_classifier()
    torch.nn.init.zeros_(head.weight)
    if head.bias is not None:
        torch.nn.init.zeros_(head.bias)
    return model


def _pretrained(cfg_model) -> torch.nn.Module:
    """timm model whose every tensor but ``classifier.*`` comes from ``cfg_model.pretrained_file`` (no hub access)."""
    if not cfg_model.pretrained_file:
        raise ValueError("model.pretrained is true but model.pretrained_file is not set (no hub access): download "
                         f"{cfg_model.name}'s ImageNet weights once and point model.pretrained_file at them, or set "
                         "model.pretrained=false")
    file = Path(cfg_model.pretrained_file)
    if not file.is_file():
        raise FileNotFoundError(f"model.pretrained_file not found: {file}")
    state = read_state_dict(file, what="model.pretrained_file")  # no pickled code runs; timm gets the tensors
    model = timm.create_model(cfg_model.name, pretrained=True, num_classes=1, drop_rate=cfg_model.drop_rate,
                              pretrained_cfg_overlay=dict(state_dict=state))
    # timm loads non-strictly when it adapts the head: check the file's keys by name ourselves
    file_keys = {k for k in state if not k.startswith("classifier.")}
    model_keys = {k for k in model.state_dict() if not k.startswith("classifier.")}
    missing, unexpected = sorted(model_keys - file_keys), sorted(file_keys - model_keys)
    if missing or unexpected:
        raise KeyError(f"{file} does not fit {cfg_model.name}: missing {missing[:10]} ({len(missing)}), "
                       f"unexpected {unexpected[:10]} ({len(unexpected)})")
    return model


def load_trained_model(checkpoint_path, cfg=None) -> tuple[torch.nn.Module, dict]:
    """Fine-tuned fast filter from a ``best_model.pth`` export ({model, config, epoch, val_auc}); strict load.

    Returns (model in eval mode, checkpoint dict). With ``cfg`` the saved architecture and input size must match it.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train first (`python -m cascade_fast_filter train`) or pass "
                                f"--checkpoint")
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise KeyError(f"{path}: not a stage-1 export (needs 'model' and 'config' keys; a run's last.pth is the "
                       f"resume state, its weights are exported as best_model.pth)")
    saved = ckpt["config"]["model"]
    if cfg is not None and (saved["name"], saved["input_size"]) != (cfg.model.name, cfg.model.input_size):
        raise ValueError(f"{path} holds {saved['name']} at {saved['input_size']} px but the config says "
                         f"{cfg.model.name} at {cfg.model.input_size} px")
    model = build(OmegaConf.create(saved), pretrained=False)
    load_state_dict_strict(model, ckpt["model"], source=str(path))
    return model.eval(), ckpt


def measure_gflops(model: torch.nn.Module, input_size: int) -> float:
    """Forward FLOPs of one image at input_size x input_size in GFLOPs (torch FlopCounterMode: multiply-add = 2)."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


@torch.no_grad()
def measure_ms_per_image(model: torch.nn.Module, input_size: int, batch_size: int, device="cpu",
                         repeats: int = 5, warmup: int = 2) -> dict:
    """Forward time per image (ms) at ``batch_size`` on ``device``: median over ``repeats`` timed batches.

    Wall-clock time of the model alone (no decoding), CUDA synchronised; on a shared CPU it includes contention, so
    compare stages measured side by side. Returns {ms_per_image, batch_size, device, repeats}.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    x = torch.randn(batch_size, 3, input_size, input_size, device=device)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    model.train(was_training)
    return {"ms_per_image": 1000.0 * statistics.median(times) / batch_size, "batch_size": int(batch_size),
            "device": str(device), "repeats": int(repeats)}


@torch.no_grad()
def predict_logits(model, rows, cfg, device=None) -> np.ndarray:
    """Logits [N] of `model` on manifest-like rows (need `.image_path`), eval transforms, in row order.

    ``device`` defaults to the config's ``device`` knob (auto = CUDA when available).
    """
    from common_utils.train import build_loader

    from ..config import local_context
    from .data import ManifestDataset, build_transforms

    ctx = local_context(cfg.device if device is None else device)
    dataset = ManifestDataset(rows, build_transforms(cfg, train=False))
    loader = build_loader(dataset, cfg.eval.batch_size, ctx, num_workers=cfg.data.num_workers)
    model.eval().to(ctx.device)
    out = [model(x.to(ctx.device)).float().reshape(-1).cpu() for x, _, _ in loader]
    return torch.cat(out).numpy().astype(np.float64)


def build(cfg_model, pretrained: bool | None = None) -> torch.nn.Module:
    """The fast filter of ``cfg.model``: timm ``name`` with one logit, a zeroed head, ImageNet weights from
    ``pretrained_file`` when ``pretrained`` (default ``cfg_model.pretrained``) is true, else random init."""
    pretrained = cfg_model.pretrained if pretrained is None else pretrained
    if pretrained:
        return zero_head(_pretrained(cfg_model))
    return zero_head(timm.create_model(cfg_model.name, pretrained=False, num_classes=1, drop_rate=cfg_model.drop_rate))
