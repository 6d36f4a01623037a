"""Stage 2 epoch on cached h(t) vs an epoch that runs the frozen XLS-R front-end each step, at XLS-R 300M size.

The detector is the paper config's (``configs/xai_stage2.yaml``: XLS-R 300M = Wav2Vec2Model with 24 layers, hidden
1024, 16 heads, FFN 4096, XLS-R's conv feature extractor; Conformer-TCM head), random init (no weights needed for
timing). Measured in this run:
  - the front-end's cost per clip: ``frame_embeddings`` (what Stage 2 caches) on ``--clips`` random clips of the
    config's crop (66,800 samples = 4.2 s at 16 kHz);
  - one cached Stage 2 step at the real batch size (24): gather h(t) [24, 208, 1024] from a ``FeatureCache`` memmap,
    EMA prototype update, XAI loss forward + backward, gradient clipping and the Adam step through the shared
    ``common_utils.train.OptimStep`` (the body of ``train_stage2``'s loop).
The epoch ratio is computed from the parts: (batch x per-clip front-end s + cached step s) / cached step s (audio
decoding, which the uncached epoch also pays, is left out, so the ratio is a lower bound).

    python bench/stage2_cache.py [--threads 1] [--clips 2] [--steps 3] [--repeats 3] [--device cpu]

stdout: JSON with ``ratios``; stderr: progress.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common_utils.bench import (  # torch-free: the thread count is set before torch loads
    clock,
    median_seconds,
    pin_threads,
)

THREADS = pin_threads()
import torch  # noqa: E402
from audio_xai.config import get_config  # noqa: E402
from audio_xai.model.conformertcm import build_detector, freeze  # noqa: E402
from audio_xai.model.xai_stage2 import build_xai  # noqa: E402
from audio_xai.trainer.stage2 import frame_embeddings  # noqa: E402
from common_utils.data import FeatureCache  # noqa: E402
from common_utils.train import OptimStep  # noqa: E402

torch.set_num_threads(THREADS)
ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[stage2_cache] {msg}", file=sys.stderr, flush=True)


def cached_features(tmp: Path, n: int, frames: int, dim: int) -> torch.Tensor:
    """[n, frames, dim] random float32 h(t) written to and memory-mapped from a ``FeatureCache`` entry."""
    files = []
    for i in range(n):
        f = tmp / "clips" / f"{i:05d}.flac"
        f.parent.mkdir(exist_ok=True)
        f.touch()
        files.append(f)
    return FeatureCache(tmp / "cache", "tcm_add-bench", {"random": True}).load_or_build(
        files, lambda paths: torch.randn(len(paths), frames, dim), batch_size=16)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP / MKL threads (default 1)")
    p.add_argument("--clips", type=int, default=2, help="clips per timed front-end forward")
    p.add_argument("--steps", type=int, default=3, help="distinct cached batches (the timed steps cycle over them)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    cfg = get_config(ROOT / "configs" / "xai_stage2.yaml", [f"device={a.device}"])
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    detector = freeze(build_detector(cfg.detector)).to(device)
    n_params = sum(q.numel() for q in detector.ssl_model.parameters())
    log(f"detector built in {time.perf_counter() - t0:.1f}s (random init; front-end {n_params / 1e6:.0f}M "
        f"parameters); {THREADS} thread(s)")

    cut, layer, ssl = cfg.data.cut, cfg.model.feature_layer, cfg.detector.ssl
    wave = torch.randn(a.clips, cut, device=device)
    with torch.no_grad():
        h = frame_embeddings(detector, wave[:1], layer)
    frames, dim = h.shape[1:]
    tower_s = median_seconds(lambda: frame_embeddings(detector, wave, layer), max(1, a.repeats - 1), device,
                             THREADS) / a.clips
    log(f"front-end forward: {tower_s:.3f} s/clip ({cut} samples -> {frames} x {dim})")

    batch, tr = cfg.train.batch_size, cfg.train
    xai = build_xai(cfg.model, dim).to(device)
    opt = torch.optim.Adam([q for q in xai.parameters() if q.requires_grad], lr=tr.lr, weight_decay=tr.weight_decay)
    step = OptimStep(opt, device=device, precision=tr.precision, grad_clip=tr.grad_clip, model=xai)
    warmup, timed = 2, a.repeats * a.steps
    step.begin_epoch(0, warmup + timed)
    labels = torch.arange(batch * a.steps) % 2
    n_valid = torch.full((batch * a.steps,), frames)
    state = {"step": 0}
    with tempfile.TemporaryDirectory() as tmp:
        feats = cached_features(Path(tmp), batch * a.steps, frames, dim)

        def cached_step():
            """One step of ``train_stage2``'s loop on a batch read from the cache."""
            idx = torch.arange(batch) + batch * (state["step"] % a.steps)
            state["step"] += 1
            h = feats[idx].to(device).float()
            mask = (torch.arange(frames)[None] < n_valid[idx][:, None]).to(device)
            y = labels[idx].to(device)
            if xai.prototypes.mode == "ema":
                xai.update_prototypes(h, y, mask)
            with step.autocast():
                terms = xai(h, y, mask)
            step(terms["total"])

        step_s = median_seconds(cached_step, timed, device, THREADS, warmup=warmup)
    log(f"cached Stage 2 step (batch {batch}): {step_s:.3f} s")

    recompute_step = batch * tower_s + step_s
    print(json.dumps({
        "bench": "audio-xai-prototype/bench/stage2_cache.py",
        "threads": THREADS, "device": a.device, "torch": torch.__version__, "clock": clock(device, THREADS)[1],
        "repeats": a.repeats, "statistic": "median after warm-up calls",
        "setup": {"front_end": f"XLS-R {ssl.num_hidden_layers} x {ssl.hidden_size}, {n_params:,} params, random init",
                  "feature_layer": str(layer), "clip_samples": cut, "clips_timed": a.clips,
                  "frames_x_dim": [frames, dim], "batch_size": batch, "cached_batches": a.steps,
                  "prototype_mode": cfg.model.prototype_mode, "precision": tr.precision},
        "method": "epoch ratio computed from measured parts: (batch_size x front-end s/clip + cached step s) / cached "
                  "step s; the front-end runs on waveform tensors (audio decoding excluded)",
        "seconds": {"front_end_per_clip": tower_s, "cached_step": step_s, "recompute_step": recompute_step},
        "ratios": {"audio_cache_vs_recompute": recompute_step / step_s},
        "ratio_definitions": {"audio_cache_vs_recompute": "recompute epoch s / cached epoch s; target >= 20 at "
                                                          "XLS-R 300M"},
    }, indent=1))


if __name__ == "__main__":
    main()
