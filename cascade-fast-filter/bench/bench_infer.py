"""Fast-filter inference throughput: eager NCHW, channels_last and torch.compile, side by side in one run.

The paper config's model (``configs/stage1.yaml``: MobileNetV4-Hybrid-Medium at 256, random init: no weights needed
for timing), images/s at ``--batches`` (default 64) for each variant; the data loader's images/s (decode + eval
transforms of a generated ai_images set) against the model's, to tell whether the loader is the bottleneck; one
AdamW step over the model's parameters in the single-tensor, foreach and fused forms. torch.compile runs in a child
process that times eager and compiled side by side after compiling; inductor's C++ build takes minutes on a small CPU
(cached under /tmp/torchinductor_$USER for later runs), so past ``--compile-timeout`` seconds the child is stopped.
If compiling is unavailable, fails or times out, the JSON says so (``compile_error``) and its ratio is null.

    python bench/bench_infer.py [--threads 1] [--batches 64] [--repeats 3] [--no-compile] [--compile-timeout 900]
                                [--device cpu] [--workers 0] [--data-root DIR] [key=value ...]

stdout: JSON with ``ratios`` (``cascade_compile_vs_eager_b64`` = eager s / compiled s per batch); stderr: progress.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from common_utils.bench import (  # torch-free: the thread count is set before torch loads
    clock,
    medians,
    pin_threads,
)

THREADS = pin_threads()
import torch  # noqa: E402
from cascade_fast_filter.config import get_config  # noqa: E402
from cascade_fast_filter.stage1.data import ManifestDataset, build_transforms, read_split  # noqa: E402
from cascade_fast_filter.stage1.model import build as build_model  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

torch.set_num_threads(THREADS)


def log(msg: str) -> None:
    print(f"[bench_infer] {msg}", file=sys.stderr, flush=True)


def loader_images_per_s(cfg, workers: int, max_images: int) -> float:
    rows = read_split(cfg, "val")[:max_images]
    loader = DataLoader(ManifestDataset(rows, build_transforms(cfg, train=False)), batch_size=64, num_workers=workers)
    t0, n = time.perf_counter(), 0
    for x, _, _ in loader:
        n += len(x)
    return n / (time.perf_counter() - t0)


def adamw_step_seconds(params, device) -> dict:
    for p in params:
        p.grad = torch.randn_like(p)
    out = {}
    for name, kw in (("single_tensor", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        try:
            opt = torch.optim.AdamW(params, lr=1e-4, **kw)
            out[name] = medians({name: opt.step}, 10, device, THREADS)[name]
        except (RuntimeError, TypeError) as e:
            out[name] = f"unavailable: {e}"
    return out


def build_pair(cfg, device):
    """The filter in NCHW and a channels_last copy with the same weights, eval mode."""
    eager = build_model(cfg.model).eval().to(device)
    nhwc = build_model(cfg.model).eval().to(device, memory_format=torch.channels_last)
    nhwc.load_state_dict(eager.state_dict())
    return eager, nhwc


def time_variants(models: dict, size: int, batches, repeats: int, device) -> dict:
    """{'<variant>@<batch>': s per batch} for eval models (channels_last input for every variant but 'eager')."""
    seconds = {}
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=device)
        xl = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            fns = {f"{name}@{batch}": (lambda m=model, v=(x if name == "eager" else xl): m(v))
                   for name, model in models.items()}
            seconds.update(medians(fns, repeats, device, THREADS))
        log(", ".join(f"{k} {batch / v:.1f} img/s" for k, v in seconds.items() if k.endswith(f"@{batch}")))
    return seconds


def compile_child(spec: dict) -> dict:
    """In a child process: compile the channels_last model, then time eager vs compiled side by side."""
    device = torch.device(spec["device"])
    cfg = get_config(spec["config"], [*spec["overrides"], "model.pretrained=false"])
    size = cfg.model.input_size
    eager, nhwc = build_pair(cfg, device)
    compiled = torch.compile(nhwc)
    x = torch.randn(max(spec["batches"]), 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
    compile_s = time.perf_counter() - t0
    log(f"torch.compile: first call {compile_s:.1f}s")
    seconds = time_variants({"eager": eager, "compile": compiled}, size, spec["batches"], spec["repeats"], device)
    return {"compile_seconds": compile_s, "seconds": seconds}


def run_compile_child(args) -> dict:
    """``compile_child`` in a fresh process group, stopped after ``--compile-timeout`` s; errors become a message."""
    spec = {k: getattr(args, k) for k in ("config", "overrides", "batches", "repeats", "device")}
    cmd = [sys.executable, __file__, "--threads", str(THREADS), "--compile-child", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=args.compile_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and inductor's compile workers
        proc.communicate()
        return {"error": f"timed out after {args.compile_timeout:.0f}s (compiling and timing; see stderr)"}
    if proc.returncode:
        return {"error": f"exit {proc.returncode} (torch.compile failed here; its traceback is on stderr)"}
    return json.loads(out.strip().splitlines()[-1])


def main():
    if "--compile-child" in sys.argv:
        print(json.dumps(compile_child(json.loads(sys.argv[sys.argv.index("--compile-child") + 1]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP / MKL threads (default 1)")
    parser.add_argument("--config", default=None, help="default: configs/stage1.yaml (MobileNetV4 at 256)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--compile-timeout", type=float, default=900, help="seconds for compiling + its timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="data-loader workers of the loader measurement")
    parser.add_argument("--data-root", default=None, help="folder with manifests/ (default: generate ai_images)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = get_config(args.config, [*args.overrides, "model.pretrained=false"])
    size = cfg.model.input_size
    eager, nhwc = build_pair(cfg, device)
    seconds = time_variants({"eager": eager, "channels_last": nhwc}, size, args.batches, args.repeats, device)
    result = {"bench": "cascade-fast-filter/bench/bench_infer.py", "threads": THREADS, "device": args.device,
              "torch": torch.__version__, "clock": clock(device, THREADS)[1], "repeats": args.repeats,
              "statistic": "median of interleaved repeats after a warm-up call",
              "model": cfg.model.name, "input_size": size,
              "images_per_s": {k: int(k.split("@")[1]) / v for k, v in seconds.items()}}
    ratios = {f"cascade_channels_last_vs_eager_b{b}": seconds[f"eager@{b}"] / seconds[f"channels_last@{b}"]
              for b in args.batches}
    compiled = {"error": "skipped (--no-compile)"} if args.no_compile else run_compile_child(args)
    result["compile"] = {"seconds_first_call": compiled.get("compile_seconds"), "error": compiled.get("error"),
                         "images_per_s": {k: int(k.split("@")[1]) / v for k, v in compiled.get("seconds", {}).items()},
                         "note": "eager and compiled timed side by side in the child process"}
    for b in args.batches:
        sec = compiled.get("seconds", {})
        ratios[f"cascade_compile_vs_eager_b{b}"] = sec[f"eager@{b}"] / sec[f"compile@{b}"] if sec else None
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            from common_utils.synthetic.ai_images import generate
            root = f"{tmp}/ai_images"
            generate(root, n=60, seed=0)
        data_cfg = get_config(args.config, [*args.overrides, f"data.root={root}"])
        result["loader_workers"] = args.workers
        result["loader_images_per_s"] = loader_images_per_s(data_cfg, args.workers, 256)
    b = max(args.batches)
    ratios[f"loader_vs_model_eager_b{b}"] = result["loader_images_per_s"] / result["images_per_s"][f"eager@{b}"]
    result["loader_is_bottleneck"] = ratios[f"loader_vs_model_eager_b{b}"] < 1
    result["adamw_step_s"] = adamw_step_seconds([p for p in eager.parameters() if p.requires_grad], device)
    timed = {k: v for k, v in result["adamw_step_s"].items() if isinstance(v, float)}
    ratios.update({f"adamw_{k}_vs_single_tensor": timed["single_tensor"] / v
                   for k, v in timed.items() if k != "single_tensor" and "single_tensor" in timed})
    result["ratios"] = ratios
    result["ratio_definitions"] = {
        "cascade_*_vs_eager_bN": "eager NCHW s per batch / that variant's s per batch (inference, fp32); compile: "
                                 "of the channels_last model, null when compiling failed or timed out",
        "loader_vs_model_eager_bN": "loader images/s / eager model images/s (< 1: the loader is the bottleneck)",
        "adamw_*_vs_single_tensor": "single-tensor AdamW step s / that form's step s, over the model's parameters"}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
