"""Stage 2 epoch time with cached h(t) vs recomputing the SSL front-end every epoch (tiny config), side by side.

Usage: python bench/stage2_cache.py [--data DIR] [--epochs N]. Without --data a small synthetic set is generated.
Prints JSON: seconds per epoch for both (the cached side excludes the one-off cache build, reported separately).
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audio_xai.config import get_config  # noqa: E402
from audio_xai.model.conformertcm import build_detector, tcm_state_dict  # noqa: E402
from audio_xai.trainer.stage2 import train_stage2  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            from common_utils.synthetic.partial_spoof_audio import generate

            data = tmp / "psa"
            generate(data, n=24, seed=0)
        cfg0 = get_config(ROOT / "configs" / "tiny.yaml", [f"data.root={data}", f"run_dir={tmp}"])
        torch.manual_seed(0)
        ckpt = tmp / "det.pth"
        torch.save(tcm_state_dict(build_detector(cfg0.detector)), ckpt)

        def run(name, use_cache, epochs):
            cfg = get_config(ROOT / "configs" / "tiny.yaml",
                             [f"data.root={data}", f"run_dir={tmp / name}", f"model.pretrained_checkpoint={ckpt}",
                              f"train.use_cache={use_cache}", f"train.epochs={epochs}"])
            t0 = time.perf_counter()
            train_stage2(cfg, overwrite=True)  # same run_dir: a fresh run each time, the cache kept
            return time.perf_counter() - t0

        build_plus_one = run("cached", True, 1)                 # builds the cache, then one epoch
        cached = run("cached", True, args.epochs + 1)           # cache hit: reuses it
        recompute = run("recompute", False, args.epochs + 1)
        per_cached = (cached - run("cached", True, 1)) / args.epochs
        per_recompute = (recompute - run("recompute", False, 1)) / args.epochs
    print(json.dumps({"epochs_timed": args.epochs, "cache_build_plus_first_epoch_s": build_plus_one,
                      "epoch_s_cached": per_cached, "epoch_s_recompute": per_recompute,
                      "speedup_recompute_over_cached": per_recompute / max(per_cached, 1e-9)}, indent=1))


if __name__ == "__main__":
    main()
