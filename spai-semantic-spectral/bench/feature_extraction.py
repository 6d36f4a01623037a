"""Any-resolution SPAI: time per patch against the number of patches, and peak memory against the chunk size.

Time: the paper-scale model (``configs/spai.yaml``: ViT-B/16 spectral backbone with three passes per patch, CLIP
ViT-B/16 semantic tower, semantic-spectral fusion; random init, no weights needed for timing) on one image of 8
patches (448 x 896) and one of 64 (1792 x 1792), whole forward (patchify, feature extraction in chunks, patch
attention, head). Linear scaling means the same time per patch. Two series:

- the model's default path: chunks of MODEL.FEATURE_EXTRACTION_BATCH (400), bounded on a CPU by
  MODEL.FEATURE_EXTRACTION_BATCH_CPU (16) -> ``spai_time_per_patch_64_vs_8``;
- the config's chunk without the CPU bound (all 64 patches in one chunk) -> ``spai_time_per_patch_64_vs_8_chunk400``
  (named after the chunk), where the extra time per patch is page-fault (system) time.

Each point reports user and system CPU time and minor page faults. Memory: ``model.extract`` of the largest patch
count at several chunk sizes without the CPU bound (``--chunk-config``, tiny by default: peak memory should follow
the chunk size, not the patch count). Each point runs in a fresh process (peak RSS on CPU,
torch.cuda.max_memory_allocated on GPU); fewer repeats at larger patch counts.

    python bench/feature_extraction.py [--threads 1] [--patches 8 64] [--repeats 2] [--chunk N] [--chunks 4 16 64]

stdout: JSON with ``ratios`` (time per patch at the largest count / at the smallest; target <= 1.1 for the default
path); stderr: progress.
"""
import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from common_utils.bench import pin_threads

THREADS = pin_threads()  # OMP / MKL threads before torch is imported (here and, inherited, in every child)
ROOT = Path(__file__).resolve().parents[1]
RANDOM_INIT = ["PRETRAINED", "", "MODEL.SEMANTIC.CLIP_WEIGHTS", ""]
UNBOUNDED = ["MODEL.FEATURE_EXTRACTION_BATCH_CPU", 0]


def log(msg: str) -> None:
    print(f"[feature_extraction] {msg}", file=sys.stderr, flush=True)


def measure(spec: dict) -> dict:
    """One point, in this (fresh) process: {'mode': 'forward'|'extract', config, opts, patches, chunk, repeats,
    threads, device} -> seconds per call (median), user / system CPU time and minor page faults per patch (all
    repeats), peak extra memory."""
    import statistics

    import torch
    from spai.config import get_config
    from spai.models import build_cls_model

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    cfg = get_config(spec["config"], RANDOM_INIT + spec["opts"])
    model = build_cls_model(cfg).to(device).eval()
    size, stride = cfg.DATA.IMG_SIZE, cfg.MODEL.PATCH_VIT.PATCH_STRIDE
    patches, chunk = spec["patches"], spec["chunk"] or cfg.MODEL.FEATURE_EXTRACTION_BATCH
    bound = cfg.MODEL.FEATURE_EXTRACTION_BATCH_CPU if device.type == "cpu" else 0
    used = min(chunk, patches, bound or patches)  # the chunk extract() runs at
    cpu_clock = device.type == "cpu" and spec["threads"] == 1
    now = time.process_time if cpu_clock else time.perf_counter
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if spec["mode"] == "forward":  # one image whose grid at the stride has `patches` patches
        rows = 2 ** ((patches.bit_length() - 1) // 2)  # 8 -> 2 x 4, 64 -> 8 x 8
        cols = patches // rows
        image = torch.rand(3, size + (rows - 1) * stride, size + (cols - 1) * stride, device=device)
        run = lambda: model([image], chunk)
    else:
        x = torch.rand(patches, 3, size, size, device=device)
        run = lambda: model.extract(x, chunk)
    times = []
    with torch.no_grad():
        model.extract(torch.rand(1, 3, size, size, device=device), 1)  # warm-up
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(spec["repeats"]):
            t = now()
            run()
            sync()
            times.append(now() - t)
        after = resource.getrusage(resource.RUSAGE_SELF)
        peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    seconds = statistics.median(times)
    per_patch = spec["repeats"] * patches
    return {"mode": spec["mode"], "config": spec["config"], "opts": spec["opts"], "patches": patches, "chunk": chunk,
            "chunk_used": used, "repeats": spec["repeats"], "seconds": seconds, "seconds_per_patch": seconds / patches,
            "user_s_per_patch": (after.ru_utime - before.ru_utime) / per_patch,
            "sys_s_per_patch": (after.ru_stime - before.ru_stime) / per_patch,
            "minor_faults_per_patch": (after.ru_minflt - before.ru_minflt) / per_patch,
            "peak_extra_mb": round(peak / 2 ** 20, 1), "clock": "process CPU time" if cpu_clock else "wall time"}


def run_child(spec: dict) -> dict:
    log(f"{spec['mode']} {spec['config']} {' '.join(map(str, spec['opts']))}: {spec['patches']} patches, "
        f"chunk {spec['chunk'] or 'of the config'}, {spec['repeats']} repeat(s)")
    child = [sys.executable, __file__, "--child", json.dumps(spec), "--threads", str(spec["threads"])]
    out = subprocess.run(child, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    log(f"  chunk {result['chunk_used']}: {result['seconds_per_patch']:.3f} s/patch (user "
        f"{result['user_s_per_patch']:.3f}, sys {result['sys_s_per_patch']:.3f}), peak +{result['peak_extra_mb']} MB")
    return result


def main():
    if sys.argv[1:2] == ["--child"]:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure(json.loads(sys.argv[2]))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP / MKL threads (default 1)")
    p.add_argument("--config", default="configs/spai.yaml", help="model for the time-per-patch points")
    p.add_argument("--patches", type=int, nargs="+", default=[8, 64], choices=[8, 16, 32, 64, 128],
                   help="patch counts of the timed images (2^k grids)")
    p.add_argument("--chunk", type=int, default=None,
                   help="feature-extraction chunk of the timed points (default: the config's FEATURE_EXTRACTION_BATCH; "
                        "the default series still bounds it by FEATURE_EXTRACTION_BATCH_CPU on a CPU)")
    p.add_argument("--repeats", type=int, default=2, help="repeats at the smallest patch count (scaled down above)")
    p.add_argument("--chunk-config", default="configs/tiny.yaml", help="model for the memory-vs-chunk points")
    p.add_argument("--chunks", type=int, nargs="*", default=[4, 16, 64], help="chunk sizes (none: skip)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    assert a.threads == THREADS
    common = {"threads": a.threads, "device": a.device}
    lo, n_max = min(a.patches), max(a.patches)

    def series(opts):
        return [run_child({**common, "mode": "forward", "config": a.config, "opts": opts, "patches": n,
                           "chunk": a.chunk, "repeats": max(1, a.repeats * lo // n)}) for n in sorted(a.patches)]

    default, unbounded = series([]), series(UNBOUNDED)
    vs_chunk = [run_child({**common, "mode": "extract", "config": a.chunk_config, "opts": UNBOUNDED, "patches": n_max,
                           "chunk": c, "repeats": 1}) for c in a.chunks]
    name = f"spai_time_per_patch_{n_max}_vs_{lo}"
    ratios, definitions = {}, {}
    for key, points, what in ((name, default, "the model's default path (chunk bounded on a CPU by "
                                               "MODEL.FEATURE_EXTRACTION_BATCH_CPU)"),
                              (f"{name}_chunk{unbounded[-1]['chunk']}", unbounded,
                               "the config's chunk without the CPU bound, reported beside the default")):
        first, last = points[0], points[-1]
        ratios[key] = last["seconds_per_patch"] / first["seconds_per_patch"]
        definitions[key] = (f"s/patch at {n_max} patches (chunk {last['chunk_used']}) / at {lo} (chunk "
                            f"{first['chunk_used']}), {what}, {a.config}; target <= 1.1 (linear)")
    if len(vs_chunk) > 1:
        ratios["peak_mem_smallest_vs_largest_chunk"] = (vs_chunk[0]["peak_extra_mb"]
                                                        / max(vs_chunk[-1]["peak_extra_mb"], 1e-6))
        definitions["peak_mem_smallest_vs_largest_chunk"] = (
            f"peak extra MB at chunk {vs_chunk[0]['chunk']} / at chunk {vs_chunk[-1]['chunk']} ({a.chunk_config}, "
            f"{n_max} patches)")
    print(json.dumps({
        "bench": "spai-semantic-spectral/bench/feature_extraction.py",
        "threads": a.threads, "device": a.device, "clock": default[0]["clock"],
        "statistic": "median of the repeats after a 1-patch warm-up, each point in a fresh process",
        "time_vs_patches": default, "time_vs_patches_unbounded": unbounded, "memory_vs_chunk": vs_chunk,
        "ratios": ratios, "ratio_definitions": definitions,
    }, indent=1))


if __name__ == "__main__":
    main()
