import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"


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
    """Synthetic PG-FDD fairness_images data (common_utils.synthetic), generated once per session."""
    from common_utils.synthetic.fairness_images import generate

    out = tmp_path_factory.mktemp("data") / "fairness_images"
    generate(out, n=240, seed=0)
    return out


def tiny_cfg(stage: int, data_root: Path, run_dir: Path, *overrides: str):
    from clip_fairness_adapter.__main__ import NULLABLE
    from common_utils.train import load_config

    schema = CONFIG / ("train_stage1.yaml" if stage == 1 else "train_stage2_independent_adapter.yaml")
    return load_config(CONFIG / f"tiny_stage{stage}.yaml", schema,
                       [f"data.root={data_root}", f"run_dir={run_dir}", f"data.cache_dir={run_dir.parent / 'cache'}",
                        *overrides], nullable=NULLABLE)


@pytest.fixture(scope="session")
def stage1_run(data_root, tmp_path_factory) -> Path:
    """One tiny Stage 1 run (cached features) shared by the Stage 2 tests."""
    from clip_fairness_adapter.trainer.stage1_trainer import train

    base = tmp_path_factory.mktemp("runs")
    return train(tiny_cfg(1, data_root, base / "stage1", "train.epochs=1"))
