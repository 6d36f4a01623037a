"""`make gpu-check`: what only a GPU can show, printed as one JSON object (under 10 minutes on one H200).

Sections (each is timed; a failure is recorded in the JSON and the other sections still run):
  amp       each project's tiny training CLI for a few epochs in bf16 and in fp16 on the GPU (the tables below):
            every logged loss finite, and the training loss lower after the last epoch than after the first
  ddp       nccl process group of world size 1: init, all_reduce, one DistributedDataParallel step
  cascade   the fast filter (MobileNetV4-Hybrid-Medium at 256): bf16 inference images/s eager NCHW vs channels_last
            vs torch.compile, and a bf16 training step eager vs channels_last vs torch.compile
  extract   frozen-backbone throughput: CLIP ViT-L/14 at 224 (bf16, batch 256) images/s, XLS-R 300M on 4.2 s clips
            (fp32, as Stage 2 runs it, and bf16) clips/s
  sinkhorn  the clip project's Sinkhorn bench on the GPU (the loop issues thousands of small kernels)

Without a CUDA device it prints {"skipped": "no CUDA device", ...}, says so on stderr and exits 0. ``--cpu-dry-run``
runs every section on the CPU at toy sizes (to check the code paths here; its numbers mean nothing).

    python tools/gpu_check.py [--only amp,ddp,cascade,extract,sinkhorn] [--projects a,b] [--out outputs/gpu_check]

Runs, logs and data go under ``--out`` (``result.json`` holds the printed JSON). The per-project tables
(TRAIN_RUNS, DEVICE_OVERRIDES) name each CLI's knobs; update them when a project's CLI or config keys change.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("amp", "ddp", "cascade", "extract", "sinkhorn")
PRECISIONS = ("bf16", "fp16")


@dataclass(frozen=True)
class TrainRun:
    """One tiny training command. ``argv`` follows ``python``; it runs in the project folder with the placeholders
    {data} (the project's synthetic dataset), {run} (this project + precision's run folder, shared by its runs),
    {precision} and {device} filled in. ``metrics`` is the run's metrics.jsonl relative to {run}; ``loss`` the key of
    its per-epoch training loss; ``must_fall=False`` checks finiteness only (an adversarial objective need not fall)."""

    project: str
    name: str
    argv: tuple[str, ...]
    metrics: str | None  # None: a preparation step (only its exit status is checked)
    loss: str | None
    must_fall: bool = True


# Device knobs of each project's training CLI, appended to every run of that project (each run sets its own
# precision key in its argv: a project with several training sections has one per section).
DEVICE_OVERRIDES = {
    "clip-fairness-adapter": ("device={device}",),
    "audio-xai-prototype": ("device={device}",),
    "faap-detr-contrastive": ("device={device}",),
    "spai-semantic-spectral": (),  # cuda when available
    "cascade-fast-filter": (),  # cuda when available
}
DATASETS = {"clip-fairness-adapter": "fairness_images", "audio-xai-prototype": "partial_spoof_audio",
            "faap-detr-contrastive": "gender_coco", "spai-semantic-spectral": "ai_images",
            "cascade-fast-filter": "ai_images"}
# Runs of one project go in this order (a later run reads an earlier one's checkpoint); projects run in parallel.
TRAIN_RUNS = (
    TrainRun("clip-fairness-adapter", "stage1",
             ("-m", "clip_fairness_adapter", "train_stage1", "--config", "config/tiny_stage1.yaml",
              "run_dir={run}/stage1", "data.root={data}", "data.cache_dir=null", "train.epochs=3",
              "train.precision={precision}"),
             "stage1/metrics.jsonl", "train/loss"),
    TrainRun("clip-fairness-adapter", "stage2",
             ("-m", "clip_fairness_adapter", "train_stage2", "--config", "config/tiny_stage2.yaml",
              "run_dir={run}/stage2", "data.root={data}", "data.cache_dir=null", "train.epochs=4",
              "stage1_checkpoint={run}/stage1/best.pth", "train.precision={precision}"),
             "stage2/metrics.jsonl", "train/loss_total"),
    TrainRun("audio-xai-prototype", "stage1",
             ("-m", "audio_xai", "train-stage1", "--config", "configs/tiny.yaml", "data.root={data}",
              "run_dir={run}", "stage1.epochs=4", "stage1.precision={precision}"),
             "stage1/metrics.jsonl", "train_loss"),
    TrainRun("audio-xai-prototype", "stage2",
             ("-m", "audio_xai", "train-xai", "--config", "configs/tiny.yaml", "data.root={data}", "run_dir={run}",
              "train.epochs=4", "train.precision={precision}"),
             "stage2/metrics.jsonl", "total"),
    TrainRun("faap-detr-contrastive", "split",  # the embedded data is a raw COCO root, as COCO distributes it
             ("-m", "faap_detr", "make-gender-split", "--coco-root", "{data}", "--out", "{run}/split"), None, None),
    TrainRun("faap-detr-contrastive", "detr",
             ("-m", "faap_detr", "train-detr", "--config", "configs/tiny.yaml", "data.root={run}/split",
              "run_dir={run}",
              "detr_train.epochs=5", "detr_train.precision={precision}"),
             "detr/metrics.jsonl", "loss"),
    TrainRun("faap-detr-contrastive", "generator",
             ("-m", "faap_detr", "train", "--config", "configs/tiny.yaml", "data.root={run}/split", "run_dir={run}",
              "detr.checkpoint={run}/detr/detr.pth", "train.epochs=4", "train.precision={precision}"),
             "metrics.jsonl", "loss_total", must_fall=False),
    TrainRun("spai-semantic-spectral", "base",
             ("-m", "spai", "train", "--cfg", "configs/tiny.yaml", "--data-path", "{data}/spai/train.csv",
              "--csv-root-dir", "{data}", "--output", "{run}/base", "--opt", "TRAIN.EPOCHS", "3",
              "--opt", "PRECISION", "{precision}"),
             "base/metrics.jsonl", "train_loss"),
    TrainRun("spai-semantic-spectral", "enhanced",
             ("-m", "spai", "train", "--cfg", "configs/tiny_enhanced.yaml", "--data-path", "{data}/spai/train.csv",
              "--csv-root-dir", "{data}", "--output", "{run}/enhanced", "--opt", "TRAIN.EPOCHS", "3",
              "--opt", "PRECISION", "{precision}"),
             "enhanced/metrics.jsonl", "train_loss"),
    TrainRun("cascade-fast-filter", "tiny",
             ("-m", "cascade_fast_filter", "train", "--config", "configs/tiny.yaml", "data.root={data}",
              "run_dir={run}/tiny", "train.epochs=3", "train.precision={precision}"),
             "tiny/metrics.jsonl", "train_loss"),
    TrainRun("cascade-fast-filter", "mobilenetv4",
             ("-m", "cascade_fast_filter", "train", "--config", "configs/tiny.yaml", "data.root={data}",
              "run_dir={run}/mnv4", "train.epochs=3", "train.precision={precision}",
              "model.name=mobilenetv4_hybrid_medium",
              "train.channels_last=true"),
             "mnv4/metrics.jsonl", "train_loss"),
)
# Batch sizes per section: the GPU's, and toy ones for --cpu-dry-run.
SIZES = {"cuda": {"vit_batch": 256, "audio_batch": 32, "cascade_infer": 256, "cascade_train": 64, "repeats": 5,
                  "compile": True},
         "cpu": {"vit_batch": 1, "audio_batch": 1, "cascade_infer": 2, "cascade_train": 2, "repeats": 1,
                 "compile": False}}  # inductor's C++ build takes minutes on a small CPU


def log(msg: str) -> None:
    print(f"[gpu_check] {msg}", file=sys.stderr, flush=True)


# ---- pure helpers ---------------------------------------------------------------------------------------------------
def fill(argv, **values) -> list[str]:
    """Each argument with its {placeholders} filled from ``values``."""
    return [a.format(**values) for a in argv]


def read_losses(path: Path, key: str) -> list[float]:
    """The ``key`` column of a metrics.jsonl file, in order (rows without it skipped; 'nan'/'inf' strings as floats)."""
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if key in row:
            out.append(float(row[key]))
    return out


def judge_losses(losses: list[float], must_fall: bool) -> dict:
    """{'finite', 'loss_fell' (last < first; None when not required or fewer than 2 values), 'ok'}."""
    finite = bool(losses) and all(math.isfinite(v) for v in losses)
    fell = None
    if must_fall:
        fell = finite and len(losses) >= 2 and losses[-1] < losses[0]
    return {"finite": finite, "loss_fell": fell, "ok": finite and fell is not False}


def throughput(items: int, seconds: list[float]) -> float:
    """Items per second from the median of timed repeats."""
    return items / statistics.median(seconds)


def short_error(e: BaseException) -> str:
    """'Type: first line of the message' (compiler errors run to pages)."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first[:300]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- amp ------------------------------------------------------------------------------------------------------------
def run_chain(project: str, precision: str, device: str, out: Path, threads: int, timeout: float) -> dict:
    """The project's TRAIN_RUNS in order at one precision; stops at the first failure."""
    run_dir = out / "amp" / project / precision
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    values = {"data": str(out / "data" / DATASETS[project]), "run": str(run_dir), "precision": precision,
              "device": device}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    results = {}
    for run in (r for r in TRAIN_RUNS if r.project == project):
        argv = [sys.executable, *fill(run.argv + DEVICE_OVERRIDES[project], **values)]
        logfile = run_dir / f"{run.name}.log"
        t0 = time.perf_counter()
        try:
            with open(logfile, "w") as f:
                proc = subprocess.run(argv, cwd=REPO / project, env=env, stdout=f, stderr=subprocess.STDOUT,
                                      timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = f"timed out after {timeout:.0f}s"
        res = {"seconds": round(time.perf_counter() - t0, 1), "log": str(logfile)}
        metrics = run_dir / (run.metrics or "")
        if rc == 0 and run.metrics is None:
            res.update(ok=True)
        elif rc != 0:
            tail = logfile.read_text(errors="replace").replace("\r", "\n").strip().splitlines()[-3:]
            res.update(ok=False, error=f"exit {rc}: " + " | ".join(line[:300] for line in tail))
        elif not metrics.is_file():
            res.update(ok=False, error=f"no {metrics}")
        else:
            losses = read_losses(metrics, run.loss)
            res.update(loss_key=run.loss, losses=[round(v, 5) for v in losses], **judge_losses(losses, run.must_fall))
        results[run.name] = res
        log(f"amp {project}/{run.name} {precision}: {'ok' if res['ok'] else 'FAILED'} ({res['seconds']}s)")
        if not res["ok"]:
            break
    return results


def check_amp(device: str, out: Path, jobs: int, timeout: float, projects: list[str]) -> dict:
    from common_utils.synthetic import generate

    for name in sorted({DATASETS[p] for p in projects}):
        if not (out / "data" / name / "synthetic_info.json").is_file():
            generate(name, out / "data" / name)
    chains = [(p, prec) for p in projects for prec in PRECISIONS]
    jobs = max(1, min(jobs, len(chains)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        done = list(pool.map(lambda c: run_chain(c[0], c[1], device, out, threads, timeout), chains))
    result = {}
    for (project, precision), runs in zip(chains, done):
        for name, res in runs.items():
            result.setdefault(f"{project}/{name}", {})[precision] = res
    result["all_ok"] = all(len(runs) == sum(r.project == p for r in TRAIN_RUNS) and all(v["ok"] for v in runs.values())
                           for (p, _), runs in zip(chains, done))
    return result


# ---- ddp ------------------------------------------------------------------------------------------------------------
def check_ddp(device: str) -> dict:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    backend = "nccl" if device == "cuda" else "gloo"
    t0 = time.perf_counter()
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        init_s = time.perf_counter() - t0
        dev = torch.device(device, 0) if device == "cuda" else torch.device("cpu")
        x = torch.arange(4.0, device=dev)
        dist.all_reduce(x)
        model = DistributedDataParallel(torch.nn.Linear(16, 2).to(dev), device_ids=[0] if device == "cuda" else None)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        before = model.module.weight.detach().clone()
        loss = model(torch.randn(8, 16, device=dev)).square().mean()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return {"backend": backend, "world_size": dist.get_world_size(), "init_s": round(init_s, 2),
                "all_reduce_ok": x.tolist() == [0.0, 1.0, 2.0, 3.0], "loss": float(loss),
                "weights_changed": bool((model.module.weight.detach() != before).any()),
                "ok": x.tolist() == [0.0, 1.0, 2.0, 3.0] and math.isfinite(float(loss))}
    finally:
        dist.destroy_process_group()


# ---- timing ---------------------------------------------------------------------------------------------------------
def timed(fn, repeats: int, device: str, warmup: int = 1) -> list[float]:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


# ---- cascade --------------------------------------------------------------------------------------------------------
def check_cascade(device: str, sizes: dict) -> dict:
    import torch
    from cascade_fast_filter.config import get_config
    from cascade_fast_filter.stage1.model import build as build_model
    from common_utils.train import autocast_context

    cfg = get_config(None, ["model.pretrained=false"])
    size, reps = cfg.model.input_size, sizes["repeats"]
    res = {"model": cfg.model.name, "input_size": size, "precision": "bf16 autocast", "inference": {}, "train": {}}
    eager = build_model(cfg.model).to(device)
    nhwc = build_model(cfg.model).to(device, memory_format=torch.channels_last)
    nhwc.load_state_dict(eager.state_dict())

    b = sizes["cascade_infer"]
    x = torch.randn(b, 3, size, size, device=device)
    xl = x.contiguous(memory_format=torch.channels_last)
    infer = {"eager": (eager.eval(), x), "channels_last": (nhwc.eval(), xl)}
    if sizes["compile"]:
        infer["compile"] = (torch.compile(nhwc), xl)
    for name, (model, inp) in infer.items():
        def fwd(m=model, v=inp):
            with torch.inference_mode(), autocast_context(device, "bf16"):
                m(v)
        try:
            t0 = time.perf_counter()
            fwd()  # first call (compiles)
            first = time.perf_counter() - t0
            res["inference"][name] = {"images_per_s": round(throughput(b, timed(fwd, reps, device)), 1),
                                      "first_call_s": round(first, 1)}
        except Exception as e:  # noqa: BLE001
            res["inference"][name] = {"error": short_error(e)}

    b = sizes["cascade_train"]
    x = torch.randn(b, 3, size, size, device=device)
    y = torch.randint(0, 2, (b,), device=device).float()
    xl = x.contiguous(memory_format=torch.channels_last)
    train = [("eager", eager, x), ("channels_last", nhwc, xl)] + ([("compile", nhwc, xl)] if sizes["compile"] else [])
    for name, base, inp in train:
        try:
            model = torch.compile(base) if name == "compile" else base
            base.train()
            opt = torch.optim.AdamW(base.parameters(), lr=1e-4, fused=device == "cuda")

            def step(m=model, v=inp, o=opt):
                with autocast_context(device, "bf16"):
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(m(v).reshape(-1).float(), y)
                loss.backward()
                o.step()
                o.zero_grad(set_to_none=True)

            t0 = time.perf_counter()
            step()
            first = time.perf_counter() - t0
            res["train"][name] = {"images_per_s": round(throughput(b, timed(step, reps, device)), 1),
                                  "first_call_s": round(first, 1)}
        except Exception as e:  # noqa: BLE001
            res["train"][name] = {"error": short_error(e)}
    speed = {}
    for part in ("inference", "train"):
        base = res[part].get("eager", {}).get("images_per_s")
        for name in ("channels_last", "compile"):
            other = res[part].get(name, {}).get("images_per_s")
            if base and other:
                speed[f"{part}_{name}_vs_eager"] = round(other / base, 3)
    res["speedups"] = speed
    res["batch"] = {"inference": sizes["cascade_infer"], "train": sizes["cascade_train"]}
    return res


# ---- extract --------------------------------------------------------------------------------------------------------
def vit_l14_throughput(device: str, batch: int, repeats: int) -> dict:
    """images/s of the clip project's frozen ViT-L/14 tower (feature + 4 token layers, as cached) at 224."""
    import torch
    from clip_fairness_adapter.model.clip_backbone import FrozenCLIPImageEncoder
    from common_utils.train import autocast_context

    clip = FrozenCLIPImageEncoder("ViT-L-14-quickgelu", None, token_layers=[6, 12, 18, 24]).to(device)
    images = torch.randn(batch, 3, 224, 224, device=device)
    out = {}
    for precision in ("bf16", "fp32"):
        def encode(p=precision):
            with torch.inference_mode(), autocast_context(device, p):
                clip(images)
        out[f"vit_l14_{precision}"] = {"batch": batch,
                                       "images_per_s": round(throughput(batch, timed(encode, repeats, device)), 1)}
    return out


def xlsr_300m_throughput(device: str, batch: int, repeats: int) -> dict:
    """clips/s of the audio project's frozen XLS-R 300M front-end (h(t) as Stage 2 caches it) on the paper crop."""
    import torch
    from audio_xai.config import get_config
    from audio_xai.model.conformertcm import build_detector, freeze
    from audio_xai.trainer.stage2 import frame_embeddings
    from common_utils.train import autocast_context

    cfg = get_config(REPO / "audio-xai-prototype" / "configs" / "xai_stage2.yaml")
    detector = freeze(build_detector(cfg.detector)).to(device)
    wave = torch.randn(batch, cfg.data.cut, device=device)
    out = {}
    for precision in ("fp32", "bf16"):
        def embed(p=precision):
            with torch.inference_mode(), autocast_context(device, p):
                frame_embeddings(detector, wave, cfg.model.feature_layer)
        out[f"xlsr_300m_{precision}"] = {"batch": batch, "clip_seconds": cfg.data.cut / cfg.data.sample_rate,
                                         "clips_per_s": round(throughput(batch, timed(embed, repeats, device)), 1)}
    return out


def check_extract(device: str, sizes: dict) -> dict:
    res = {**vit_l14_throughput(device, sizes["vit_batch"], sizes["repeats"]),
           **xlsr_300m_throughput(device, sizes["audio_batch"], sizes["repeats"])}
    res["note"] = "random-init weights (same cost as trained ones); inputs already on the device (no decoding)"
    return res


# ---- sinkhorn -------------------------------------------------------------------------------------------------------
def check_sinkhorn(device: str, out: Path) -> dict:
    bench = REPO / "clip-fairness-adapter" / "bench" / "bench_sinkhorn.py"
    with open(out / "sinkhorn.log", "w") as err:
        proc = subprocess.run([sys.executable, str(bench), "--device", device, "--threads", "4"],
                              cwd=bench.parents[1], stdout=subprocess.PIPE, stderr=err, text=True, timeout=300)
    if proc.returncode:
        return {"ok": False, "error": f"exit {proc.returncode}; see {out / 'sinkhorn.log'}"}
    data = json.loads(proc.stdout)
    return {"ok": True, "seconds": data["seconds"], "ratios": data["ratios"], "abs_diff": data["abs_diff"]}


# ---- main -----------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "gpu_check")
    p.add_argument("--projects", default=",".join(DATASETS), help="comma-separated projects of the amp section")
    p.add_argument("--jobs", type=int, default=10, help="training chains (project x precision) run at the same time")
    p.add_argument("--run-timeout", type=float, default=300, help="seconds allowed per training command (amp)")
    p.add_argument("--cpu-dry-run", action="store_true", help="run every section on the CPU at toy sizes")
    a = p.parse_args(argv)
    a.out = a.out.resolve()  # the training commands run inside each project folder
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    projects = [s.strip() for s in a.projects.split(",") if s.strip()]
    unknown = sorted(set(projects) - set(DATASETS))
    if unknown:
        p.error(f"--projects: unknown project(s) {unknown}; choose from {','.join(DATASETS)}")

    import torch

    info = {"torch": torch.__version__, "cuda_build": torch.version.cuda}
    if not torch.cuda.is_available() and not a.cpu_dry_run:
        print(json.dumps({"skipped": "no CUDA device", **info}))
        log("skipped: no CUDA device is available, nothing was run (this check needs a GPU)")
        return 0
    device = "cpu" if a.cpu_dry_run else "cuda"
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cudnn.benchmark = True
    a.out.mkdir(parents=True, exist_ok=True)
    result = {"device": device, **info, "sections": {}}
    checks = {"amp": lambda: check_amp(device, a.out, a.jobs, a.run_timeout, projects),
              "ddp": lambda: check_ddp(device),
              "cascade": lambda: check_cascade(device, SIZES[device]),
              "extract": lambda: check_extract(device, SIZES[device]),
              "sinkhorn": lambda: check_sinkhorn(device, a.out)}
    start = time.perf_counter()
    for name in only:
        log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            section = checks[name]()
        except Exception as e:  # noqa: BLE001 - one section failing must not hide the others
            section = {"ok": False, "error": short_error(e)}
        section["seconds"] = round(time.perf_counter() - t0, 1)
        result["sections"][name] = section
        log(f"{name} done in {section['seconds']}s")
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result, indent=1)
    (a.out / "result.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
