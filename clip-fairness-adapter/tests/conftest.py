import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
TINY_CLIP = CONFIG / "open_clip" / "TinyCLIP.json"


def shared_dir() -> Path:
    return Path(os.environ.get("SHARED_DIR", Path(__file__).resolve().parents[2] / "../shared")).resolve()


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    d = shared_dir() / "fixtures/parity/clip_fairness_upstream"
    if not d.is_dir():
        pytest.skip(f"parity fixtures not found at {d} (set SHARED_DIR to the shared/ folder)")
    return d


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """Synthetic fairness_images data (common_utils.synthetic), generated once per session."""
    from common_utils.synthetic.fairness_images import generate

    out = tmp_path_factory.mktemp("data") / "fairness_images"
    generate(out, n=240, seed=0)
    return out


def config(command: str, path: Path | str, *overrides: str):
    from clip_fairness_adapter.__main__ import load

    return load(command, str(path), list(overrides))


def tiny_cfg(stage: int, data_root: Path, run_dir: Path, *overrides: str, clip: Path | None = None):
    """The tiny config of ``stage`` on the session data; ``clip``: a pre-trained open_clip folder (else random)."""
    clip_keys = [f"clip.name=local-dir:{clip}", "clip.model_config=null"] if clip else \
        [f"clip.model_config={TINY_CLIP}"]
    return config("train_stage1" if stage == 1 else "train_stage2", CONFIG / f"tiny_stage{stage}.yaml",
                  f"data.root={data_root}", f"run_dir={run_dir}", f"data.cache_dir={run_dir.parent / 'cache'}",
                  *clip_keys, *overrides)


@pytest.fixture(scope="session")
def clip_run(data_root, tmp_path_factory) -> Path:
    """The tiny open_clip model pre-trained on the session data's captions (a few epochs): its folder."""
    from clip_fairness_adapter.trainer.clip_pretrain import EXPORT, train

    run = tmp_path_factory.mktemp("runs") / "clip"
    cfg = config("pretrain_clip", CONFIG / "pretrain_clip.yaml", f"data.root={data_root}", f"run_dir={run}",
                 f"clip.model_config={TINY_CLIP}", "device=cpu", "train.epochs=6")
    return train(cfg) / EXPORT


@pytest.fixture(scope="session")
def stage1_run(data_root, clip_run) -> Path:
    """One tiny Stage 1 run (cached features of the pre-trained tiny CLIP) shared by the Stage 2 tests."""
    from clip_fairness_adapter.trainer.stage1_trainer import train

    return train(tiny_cfg(1, data_root, clip_run.parent.parent / "stage1", "train.epochs=1", clip=clip_run))
