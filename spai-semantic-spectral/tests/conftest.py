import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)  # 2 shared cores: one thread is much faster than two contending ones

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def shared_dir() -> Path:
    return Path(os.environ.get("SHARED_DIR") or Path(__file__).resolve().parents[2] / "../shared").resolve()


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    d = shared_dir() / "fixtures/parity/spai"
    if not (d / "small.pth").is_file():
        pytest.skip(f"SPAI parity fixtures not found at {d} (set SHARED_DIR)")
    return d


def write_png(path: Path, size: tuple[int, int], seed: int, fake: bool) -> None:
    """A smooth random image; fakes get a period-2 checkerboard (a strong up-sampling artifact)."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.random((h // 8 + 1, w // 8 + 1, 3))
    img = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w] * 0.7 + rng.random((h, w, 3)) * 0.3
    if fake:
        yy, xx = np.mgrid[0:h, 0:w]
        img = img * 0.8 + 0.2 * ((yy + xx) % 2)[:, :, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A tiny SPAI CSV dataset: spai/train.csv (train/val) and spai/test.csv, sizes 64..160 px."""
    root = tmp_path_factory.mktemp("spai_data")
    sizes = [(64, 64), (96, 128), (160, 96), (128, 128), (80, 144)]
    lines = {"train": [], "test": []}
    for i in range(40):
        fake = i % 2
        split = "train" if i < 24 else ("val" if i < 32 else "test")
        rel = f"images/{'fake' if fake else 'real'}/{i:03d}.png"
        write_png(root / rel, sizes[i % len(sizes)], i, bool(fake))
        lines["test" if split == "test" else "train"].append(f"{rel},{fake},{split}")
    (root / "spai").mkdir()
    for name, rows in lines.items():
        (root / "spai" / f"{name}.csv").write_text("image,class,split\n" + "\n".join(rows) + "\n")
    return root
