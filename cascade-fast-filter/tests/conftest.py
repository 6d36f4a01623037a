"""Shared fixtures: one thread, a small synthetic ai_images set, its clips as video data, tiny configs."""
from pathlib import Path

import pytest
import torch
from cascade_fast_filter.config import get_config

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CLIP_MANIFESTS = [f"data.{s}_manifest=manifests/{s}_manifest.csv" for s in ("train", "val", "test")]


@pytest.fixture(scope="session")
def ai_images(tmp_path_factory):
    """common_utils' synthetic ai_images (2 generators, 150 reals + 150 fakes): manifests under manifests/."""
    from common_utils.synthetic.ai_images import generate
    out = tmp_path_factory.mktemp("data") / "ai_images"
    generate(out, n=150, seed=0, generators=("tconv", "nearest_blur"))
    return out


@pytest.fixture(scope="session")
def clips(ai_images, tmp_path_factory):
    """ai_images as 3-frame 64-px clips (lossless) in DeepfakeBench's layout, with manifests (video column) built by
    the manifest builder; use with CLIP_MANIFESTS."""
    from cascade_fast_filter.manifests import deepfakebench, write_manifests
    from cascade_fast_filter.synthetic_videos import write_clips
    out = tmp_path_factory.mktemp("data") / "clips"
    json_path = write_clips(ai_images, out, frames=3, size=64, seed=0, jpeg_quality=None)
    write_manifests(deepfakebench(json_path), out / "manifests", data_root=out)
    return out


def tiny_cfg(data_root, run_dir, *overrides):
    """configs/tiny.yaml pointed at `data_root` / `run_dir`, plus dotted overrides."""
    return get_config(ROOT / "configs" / "tiny.yaml",
                      [f"data.root={data_root}", f"run_dir={run_dir}", "train.log_every=100000", *overrides])
