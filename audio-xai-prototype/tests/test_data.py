"""Audio input checks, crop / repeat-padding, RawBoost algorithms 3 and 5."""
import numpy as np
import pytest
import soundfile as sf
import torch
from audio_xai.data.dataset import ASVspoofDataset, iter_utterances, pad_or_crop, segment_labels
from audio_xai.data.rawboost import isd_additive, lnl_convolutive, rawboost, ssi_additive
from common_utils.data import DataFormatError


def test_pad_or_crop():
    x = np.arange(5, dtype=np.float32)
    assert pad_or_crop(x, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert pad_or_crop(x, 3).tolist() == [0, 1, 2]


def test_dataset_reads_protocol_and_labels(data_root):
    ds = ASVspoofDataset(data_root, "train", cut=8000)
    wave, label, i = ds[1]
    assert wave.shape == (8000,) and wave.dtype == torch.float32 and label == 0 and i == 1
    assert ds.labels == [1, 0] * 4
    seg = segment_labels(data_root, "eval")
    utts = list(iter_utterances(data_root, "eval", 8000))
    assert len(utts) == 4 and all(u[3] is seg[u[0]] or np.array_equal(u[3], seg[u[0]]) for u in utts)
    assert all(len(u[2]) <= 8000 for u in utts)


@pytest.mark.parametrize("case", ["wrong_rate", "empty", "corrupt", "missing"])
def test_bad_audio_names_the_file(tmp_path, data_root, case):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(data_root, root)
    ds = ASVspoofDataset(root, "dev", cut=8000)
    bad = ds.files[0]
    if case == "wrong_rate":
        sf.write(bad, np.zeros(4000, dtype=np.float32), 8000)
    elif case == "empty":
        sf.write(bad, np.zeros(0, dtype=np.float32), 16000)
    elif case == "corrupt":
        bad.write_bytes(b"fLaC" + b"\x00garbage" * 10)
    else:
        bad.unlink()
    with pytest.raises(DataFormatError, match=bad.name):
        ds[0]


def test_rawboost_algorithms_3_and_5():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    a = rawboost(x, 3, np.random.default_rng(1))
    b = rawboost(x, 3, np.random.default_rng(1))
    assert np.array_equal(a, b) and a.shape == x.shape and a.dtype == np.float32
    snr = 10 * np.log10(np.sum(x ** 2) / np.sum((a - x) ** 2))
    assert 10 - 1e-6 <= snr <= 40 + 1e-6
    y = rawboost(x, 5, rng)
    assert y.shape == x.shape and np.abs(y).max() <= 1.0 + 1e-6 and not np.allclose(y, x)
    # ISD touches at most p_max % of the samples
    z = isd_additive(x, np.random.default_rng(2), p_max=10)
    assert np.mean(~np.isclose(z, x)) <= 0.10
    # LnL with one order is a linear FIR filter: scaling the input scales the output (before normalisation)
    small = 0.01 * x
    assert np.allclose(lnl_convolutive(small, np.random.default_rng(3), n_f=1),
                       0.01 * lnl_convolutive(x, np.random.default_rng(3), n_f=1), atol=1e-6)
    assert np.array_equal(ssi_additive(x, np.random.default_rng(4)), rawboost(x, 3, np.random.default_rng(4)))
    assert rawboost(x, 0, rng) is x
    with pytest.raises(ValueError, match="RawBoost"):
        rawboost(x, 9, rng)
