"""Waveform datasets over a corpus split (``layouts``): tcm_add's crop / repeat-pad, RawBoost, 20 ms segment labels.

Labels follow tcm_add: 1 = bona fide, 0 = spoof. Waveforms are raw (no normalisation).
"""
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from common_utils.data import DataFormatError, load_audio
from torch.utils.data import Dataset

from .layouts import list_utterances, read_segment_labels
from .rawboost import rawboost

LABEL_RESOLUTION = 0.02  # s: PartialSpoof's finest common label resolution, one per SSL frame


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


class SpoofDataset(Dataset):
    """Items: (wave [cut] float32, label int, index). RawBoost (``algo`` > 0) is drawn from (seed, epoch, index).

    ``data`` is the config's ``data`` section (root, layout, phase, cut, sample_rate).
    """

    def __init__(self, data, split: str, algo: int = 0, seed: int = 0):
        self.utterances = list_utterances(data.root, data.layout, split, data.phase)
        self.files = [u.path for u in self.utterances]
        self.labels = [u.label for u in self.utterances]
        self.split, self.cut, self.sample_rate = split, data.cut, data.sample_rate
        self.algo, self.seed, self.epoch = algo, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.utterances)

    def load(self, i: int, augment: bool = True) -> np.ndarray:
        """Raw waveform of item ``i`` (no normalisation), RawBoost applied when enabled, not yet cropped."""
        x = load_audio(self.files[i], sample_rate=self.sample_rate)
        if augment and self.algo:
            x = rawboost(x, self.algo, np.random.default_rng([self.seed, self.epoch, i]), self.sample_rate)
        return x

    def __getitem__(self, i: int):
        return torch.from_numpy(pad_or_crop(self.load(i), self.cut)), self.labels[i], i


def iter_utterances(data, split: str):
    """Yield (utt_id, label, wave [min(len, cut)] float32, 20 ms segment labels of that stretch or None) at native
    length."""
    ds = SpoofDataset(data, split)
    seg = read_segment_labels(data.root, data.layout, split, LABEL_RESOLUTION) or {}
    per_label = round(LABEL_RESOLUTION * data.sample_rate)
    for i, u in enumerate(ds.utterances):
        wave = ds.load(i, augment=False)[: data.cut]
        labels = seg.get(u.utt_id)
        yield u.utt_id, u.label, wave, None if labels is None else labels[: -(-len(wave) // per_label)]
