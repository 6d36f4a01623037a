"""Cost of FAAP relative to plain DETR inference, measured side by side in one run; prints JSON.

python bench/bench_step.py [--config configs/tiny.yaml] [--device cpu] [--batch 4] [--size 64] [--iters 5]"""
import argparse
import json
import time
from pathlib import Path

import torch
from faap_detr.losses.objective import build as build_objective
from faap_detr.main import load_cfg
from faap_detr.models.detr import FrozenDETR, build, normalize
from faap_detr.models.generator import PerturbationGenerator, apply_generator
from faap_detr.models.projection_head import ProjectionHead


def timed(fn, iters, device):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()
    cfg = load_cfg(a.config)
    dev = torch.device(a.device)
    model, crit, _ = build(cfg)
    detr = FrozenDETR(model).to(dev)
    gen = PerturbationGenerator(cfg.generator.base_channels, 0.1).to(dev)
    head = ProjectionHead(cfg.detr.hidden_dim, cfg.projection.hidden_dim, cfg.projection.output_dim).to(dev)
    objective = build_objective(cfg, crit.to(dev))
    gender = torch.arange(a.batch, device=dev) % 2
    pixels = torch.rand(a.batch, 3, a.size, a.size, device=dev)
    mask = torch.zeros(a.batch, a.size, a.size, dtype=torch.bool, device=dev)
    targets = [{"labels": torch.ones(1, dtype=torch.int64, device=dev),
                "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.4]], device=dev)} for _ in range(a.batch)]

    @torch.no_grad()
    def inference():
        detr(normalize(pixels), mask)

    def faap_step():
        x, _ = apply_generator(gen, pixels, mask)
        out = detr(x, mask)
        loss, _ = objective(out, targets, gender, 5, float(a.batch), head(out["hs"][-1]))
        loss.backward()

    t_inf, t_step = timed(inference, a.iters, dev), timed(faap_step, a.iters, dev)
    print(json.dumps({"device": str(dev), "batch": a.batch, "size": a.size, "detr_inference_s": t_inf,
                      "faap_train_step_s": t_step, "step_over_inference": t_step / t_inf}))


if __name__ == "__main__":
    main()
