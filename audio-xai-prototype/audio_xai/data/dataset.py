"""ASVspoof 2019 LA data (protocol + flac) and PartialSpoof 20 ms segment labels.

Layout under ``root``: ``LA/ASVspoof2019_LA_{split}/flac/<utt>.flac``,
``LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt`` and
``segment_labels/{split}_seglab_0.02.npy``. Labels follow tcm_add: 1 = bona fide, 0 = spoof.
"""
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common_utils.data import DataFormatError, load_audio, read_asvspoof_protocol, read_partialspoof_labels
from torch.utils.data import Dataset

from .rawboost import rawboost

PROTOCOLS = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


def split_files(root, split: str) -> tuple[Path, Path, Path]:
    """(protocol file, flac folder, segment-label file) of ``split`` under ``root``."""
    if split not in PROTOCOLS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(PROTOCOLS)}")
    root = Path(root)
    protocol = root / "LA" / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{PROTOCOLS[split]}.txt"
    flac = root / "LA" / f"ASVspoof2019_LA_{split}" / "flac"
    return protocol, flac, root / "segment_labels" / f"{split}_seglab_0.02.npy"


def pad_or_crop(x: np.ndarray, cut: int) -> np.ndarray:
    """First ``cut`` samples, repeat-tiling shorter clips (tcm_add ``pad``)."""
    if len(x) >= cut:
        return x[:cut]
    return np.tile(x, cut // len(x) + 1)[:cut]


def num_samples(path: Path) -> int:
    """Length of an audio file in samples, read from its header; errors name the file."""
    try:
        return sf.info(str(path)).frames
    except (sf.LibsndfileError, RuntimeError) as e:
        raise DataFormatError(path, f"cannot read audio header ({e})") from e


def segment_labels(root, split: str) -> dict[str, np.ndarray] | None:
    """PartialSpoof 20 ms labels of ``split`` (1 = bona fide), or None when the file does not exist."""
    path = split_files(root, split)[2]
    return read_partialspoof_labels(path) if path.exists() else None


class ASVspoofDataset(Dataset):
    """Items: (wave [cut] float32, label int, index). RawBoost (``algo`` > 0) is drawn from (seed, epoch, index)."""

    def __init__(self, root, split: str, cut: int = 66800, algo: int = 0, seed: int = 0, sample_rate: int = 16000):
        protocol, self.flac_dir, _ = split_files(root, split)
        self.rows = read_asvspoof_protocol(protocol)
        self.files = [self.flac_dir / f"{r.utt_id}.flac" for r in self.rows]
        self.labels = [r.label for r in self.rows]
        self.cut, self.algo, self.seed, self.sample_rate, self.epoch = cut, algo, seed, sample_rate, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.rows)

    def load(self, i: int, augment: bool = True) -> np.ndarray:
        """Raw waveform of item ``i`` (no normalisation), RawBoost applied when enabled, not yet cropped."""
        x = load_audio(self.files[i], sample_rate=self.sample_rate)
        if augment and self.algo:
            x = rawboost(x, self.algo, np.random.default_rng([self.seed, self.epoch, i]), self.sample_rate)
        return x

    def __getitem__(self, i: int):
        return torch.from_numpy(pad_or_crop(self.load(i), self.cut)), self.labels[i], i


def iter_utterances(root, split: str, cut: int, sample_rate: int = 16000):
    """Yield (utt_id, label, wave [min(len, cut)] float32, 20 ms labels or None) at native length (no padding)."""
    ds = ASVspoofDataset(root, split, cut, 0, 0, sample_rate)
    seg = segment_labels(root, split) or {}
    for i, row in enumerate(ds.rows):
        yield row.utt_id, row.label, ds.load(i, augment=False)[:cut], seg.get(row.utt_id)
