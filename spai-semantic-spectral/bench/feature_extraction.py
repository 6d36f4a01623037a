"""Feature-extraction time and peak memory against patch count and MODEL.FEATURE_EXTRACTION_BATCH.

Each measurement runs in a fresh process (peak RSS on CPU, torch.cuda.max_memory_allocated on GPU); prints
JSON with the ratios measured side by side. Time and memory should grow linearly with the patch count, and
peak memory with the chunk size, not with the patch count, once patches exceed the chunk.
    python bench/feature_extraction.py [--config configs/tiny.yaml] [--patches 8 16 32 64] [--chunks 4 16 64]
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(config: str, patches: int, chunk: int, repeats: int) -> dict:
    import torch
    from spai.config import get_config
    from spai.models import build_cls_model
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = get_config(config)
    model = build_cls_model(cfg).to(device).eval()
    size = cfg.DATA.IMG_SIZE
    x = torch.rand(patches, 3, size, size, device=device)
    with torch.no_grad():
        model.extract(x[:1], 1)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t = time.perf_counter()
        for _ in range(repeats):
            model.extract(x, chunk)
        if device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"patches": patches, "chunk": chunk, "seconds": (time.perf_counter() - t) / repeats,
            "peak_extra_mb": round(peak / 2 ** 20, 2), "device": device.type}


def run_child(config, patches, chunk, repeats) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", config, str(patches), str(chunk), str(repeats)],
                         cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if sys.argv[1:2] == ["--child"]:
        config, patches, chunk, repeats = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(measure(config, patches, chunk, repeats)))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument("--patches", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--chunks", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    chunk = min(a.chunks)
    vs_patches = [run_child(a.config, n, chunk, a.repeats) for n in a.patches]
    n = max(a.patches)
    vs_chunk = [run_child(a.config, n, c, a.repeats) for c in a.chunks]
    first, last = vs_patches[0], vs_patches[-1]
    print(json.dumps({
        "config": a.config,
        "vs_patches": vs_patches, "vs_feature_extraction_batch": vs_chunk,
        "patch_ratio": last["patches"] / first["patches"],
        "time_ratio": round(last["seconds"] / first["seconds"], 3),
        "time_per_patch_ratio": round((last["seconds"] / last["patches"]) / (first["seconds"] / first["patches"]), 3),
        "peak_mem_ratio_smallest_vs_largest_chunk": round(vs_chunk[0]["peak_extra_mb"]
                                                          / max(vs_chunk[-1]["peak_extra_mb"], 1e-6), 3),
    }, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
