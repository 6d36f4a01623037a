"""Shared fixtures: a tiny ASVspoof/PartialSpoof-format data set written with soundfile, the tiny config, a tiny
random detector saved in tcm_add's checkpoint format, and the path of the shared parity fixtures."""
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from audio_xai.config import get_config
from audio_xai.model.conformertcm import build_detector, tcm_state_dict

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
SR, HOP = 16000, 320


def shared_dir() -> Path:
    return Path(os.environ.get("SHARED_DIR", Path(__file__).resolve().parents[2] / "../shared")).resolve()


def write_dataset(root: Path, n_per_class=(4, 2, 2), seed: int = 0) -> Path:
    """Bona fide = harmonic tone + noise; spoof = the same with 1-2 segments replaced by buzzy high-band noise."""
    rng = np.random.default_rng(seed)
    proto_dir = root / "LA" / "ASVspoof2019_LA_cm_protocols"
    proto_dir.mkdir(parents=True)
    (root / "segment_labels").mkdir()
    for split, code, n in zip(("train", "dev", "eval"), "TDE", n_per_class):
        flac = root / "LA" / f"ASVspoof2019_LA_{split}" / "flac"
        flac.mkdir(parents=True)
        lines, seg = [], {}
        for i in range(2 * n):
            frames = int(rng.integers(20, 40))
            t = np.arange(frames * HOP) / SR
            x = sum(rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * rng.uniform(100, 900) * t) for _ in range(3))
            x = x + 0.01 * rng.normal(size=len(t))
            lab = np.ones(frames, dtype=int)
            spoof = i % 2 == 1
            if spoof:
                a = int(rng.integers(2, frames // 2))
                b = a + int(rng.integers(4, frames // 2))
                lab[a:b] = 0
                buzz = 0.3 * np.sign(np.sin(2 * np.pi * 3000 * t[a * HOP:b * HOP]))
                x[a * HOP:b * HOP] = buzz + 0.05 * rng.normal(size=(b - a) * HOP)
            utt = f"{'CON' if spoof else 'LA'}_{code}_{i:07d}"
            sf.write(flac / f"{utt}.flac", (0.5 * x).astype(np.float32), SR)
            lines.append(f"LA_{1000 + i} {utt} - {'A01' if spoof else '-'} {'spoof' if spoof else 'bonafide'}\n")
            seg[utt] = np.array([str(v) for v in lab])
        ext = "trn" if split == "train" else "trl"
        (proto_dir / f"ASVspoof2019.LA.cm.{split}.{ext}.txt").write_text("".join(lines))
        np.save(root / "segment_labels" / f"{split}_seglab_0.02.npy", seg, allow_pickle=True)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("psa"))


def make_cfg(data_root, run_dir, *overrides):
    return get_config(ROOT / "configs" / "tiny.yaml",
                      [f"data.root={data_root}", f"run_dir={run_dir}", "data.cut=8000", "device=cpu", *overrides])


@pytest.fixture(scope="session")
def detector_ckpt(tmp_path_factory, data_root) -> Path:
    """A random tiny detector in tcm_add format (BatchNorm statistics made non-trivial)."""
    torch.manual_seed(0)
    cfg = make_cfg(data_root, tmp_path_factory.mktemp("det"))
    model = build_detector(cfg.detector)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = Path(cfg.run_dir) / "avg_5_best.pth"
    torch.save(tcm_state_dict(model), path)
    return path
