"""Inference throughput of the fast filter, printed as JSON from one run (ratios are side by side).

images/s at batch 1 and 64 for eager NCHW, channels_last and torch.compile; data-loader images/s (decode +
eval transforms) against model images/s, to tell whether the loader is the bottleneck.

    python bench/bench_infer.py [--config configs/stage1.yaml] [--data-root DIR] [key=value ...]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from cascade_fast_filter.config import get_config
from cascade_fast_filter.stage1.data import ManifestDataset, build_transforms, read_split
from cascade_fast_filter.stage1.model import build as build_model
from torch.utils.data import DataLoader


def images_per_s(fn, batch: int, iters: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t0)


def loader_images_per_s(cfg, max_images: int) -> float:
    rows = read_split(cfg, "val")[:max_images]
    loader = DataLoader(ManifestDataset(rows, build_transforms(cfg, train=False)), batch_size=64,
                        num_workers=cfg.data.num_workers)
    t0, n = time.perf_counter(), 0
    for x, _, _ in loader:
        n += len(x)
    return n / (time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=None)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build on CPU)")
    parser.add_argument("--data-root", default=None, help="folder with manifests/ (default: generate ai_images)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = get_config(args.config, [*args.overrides, "model.pretrained=false"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = cfg.model.input_size
    base = build_model(cfg.model).eval().to(device)
    nhwc = build_model(cfg.model).eval().to(device, memory_format=torch.channels_last)
    variants = {"eager": base, "channels_last": nhwc}
    if not args.no_compile:
        variants["compile"] = torch.compile(nhwc)
    result = {"model": cfg.model.name, "input_size": size, "device": str(device), "images_per_s": {}}
    for batch in (1, 64):
        x = torch.randn(batch, 3, size, size, device=device)
        for name, model in variants.items():
            xin = x if name == "eager" else x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                result["images_per_s"][f"{name}@{batch}"] = images_per_s(lambda m=model, v=xin: m(v), batch,
                                                                           args.iters)
    ips = result["images_per_s"]
    result["ratios"] = {f"{name}/eager@{b}": ips[f"{name}@{b}"] / ips[f"eager@{b}"]
                        for name in variants if name != "eager" for b in (1, 64)}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            from common_utils.synthetic.ai_images import generate
            root = f"{tmp}/ai_images"
            generate(root, n=60, seed=0)
        data_cfg = get_config(args.config, [*args.overrides, f"data.root={root}"])
        result["loader_images_per_s"] = loader_images_per_s(data_cfg, 256)
    result["ratios"]["loader/model_eager@64"] = result["loader_images_per_s"] / ips["eager@64"]
    result["loader_is_bottleneck"] = result["loader_images_per_s"] < ips["eager@64"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
