"""Shared fixtures: one thread, a small synthetic ai_images set, tiny configs."""
from pathlib import Path

import pytest
import torch
from cascade_fast_filter.stage1.utils import get_config

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ai_images(tmp_path_factory):
    """common_utils' synthetic ai_images (2 generators, 150 reals + 150 fakes): manifests under manifests/."""
    from common_utils.synthetic.ai_images import generate
    out = tmp_path_factory.mktemp("data") / "ai_images"
    generate(out, n=150, seed=0, generators=("tconv", "nearest_blur"))
    return out


def tiny_cfg(data_root, run_dir, *overrides):
    """configs/tiny.yaml pointed at `data_root` / `run_dir`, plus dotted overrides."""
    return get_config(ROOT / "configs" / "tiny.yaml",
                      [f"data.root={data_root}", f"run_dir={run_dir}", "train.log_every=100000", *overrides])
