"""partial_spoof_audio: deterministic, ASVspoof/PartialSpoof formats parse, and spoof frames are really vocoded."""

import numpy as np
import pytest
from common_utils.data import load_audio, read_asvspoof_protocol, read_partialspoof_labels
from common_utils.metrics import roc_auc
from common_utils.synthetic import partial_spoof_audio

SPLITS = (("train", "trn"), ("dev", "trl"), ("eval", "trl"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("partial_spoof_audio")
    partial_spoof_audio.generate(root, n=24, seed=0)
    return root


def _split(root, split, ext):
    la = root / "LA"
    protocol = read_asvspoof_protocol(la / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{split}.{ext}.txt")
    labels = read_partialspoof_labels(root / "segment_labels" / f"{split}_seglab_0.02.npy")
    audio = {r.utt_id: load_audio(la / f"ASVspoof2019_LA_{split}" / "flac" / f"{r.utt_id}.flac") for r in protocol}
    return protocol, labels, audio


def test_deterministic_for_a_seed(tmp_path):
    for sub, seed in (("a", 5), ("b", 5), ("c", 6)):
        partial_spoof_audio.generate(tmp_path / sub, n=6, seed=seed)
    files = {sub: {str(p.relative_to(tmp_path / sub)): p.read_bytes() for p in sorted((tmp_path / sub).rglob("*"))
                   if p.is_file()} for sub in "abc"}
    assert files["a"] == files["b"]
    assert files["a"].keys() != files["c"].keys() or files["a"] != files["c"]
    _, labels_a, audio_a = _split(tmp_path / "a", "train", "trn")
    _, labels_b, audio_b = _split(tmp_path / "b", "train", "trn")
    assert all(np.array_equal(audio_a[u], audio_b[u]) and np.array_equal(labels_a[u], labels_b[u]) for u in audio_a)


def test_formats_parse_and_agree(dataset):
    speakers = []
    for split, ext in SPLITS:
        protocol, labels, audio = _split(dataset, split, ext)
        assert set(labels) == {r.utt_id for r in protocol}
        assert {r.key for r in protocol} == {"bonafide", "spoof"}
        speakers.append({r.speaker for r in protocol})
        for r in protocol:
            x, seg = audio[r.utt_id], labels[r.utt_id]
            assert x.dtype == np.float32 and 1.0 <= len(x) / 16000 <= 4.0
            assert len(x) == 320 * len(seg)  # one PartialSpoof label per 20 ms
            if r.key == "bonafide":
                assert r.label == 1 and r.attack == "-" and seg.min() == 1
            else:
                assert r.label == 0 and r.attack in partial_spoof_audio.ATTACKS and 0 < (seg == 0).sum() < len(seg)
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])


def _high_band_log_energy(x: np.ndarray) -> np.ndarray:
    """Per 20 ms frame: log energy above 7 kHz, ``[n_frames]``."""
    frames = x.reshape(-1, 320).astype(np.float64) * np.hanning(320)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.log(power[:, np.fft.rfftfreq(320, 1 / 16000) > 7000].sum(1) + 1e-12)


def test_spoof_frames_differ_exactly_where_labelled(dataset):
    protocol, labels, audio = _split(dataset, "train", "trn")
    gaps, half_diffs, frame_scores, frame_is_spoof = [], [], [], []
    for r in protocol:
        stat, bona = _high_band_log_energy(audio[r.utt_id]), labels[r.utt_id] == 1
        if r.key == "spoof":
            gaps.append(stat[bona].mean() - stat[~bona].mean())
            frame_scores.append(-stat)
            frame_is_spoof.append(~bona)
        else:
            half = len(stat) // 2
            half_diffs.append(abs(stat[:half].mean() - stat[half:].mean()))
    assert min(gaps) > 2.0  # every spoofed utterance: labelled-spoof frames lose the high band
    assert np.mean(half_diffs) < 0.5 * np.mean(gaps)  # bona fide halves do not differ like that
    assert roc_auc(np.concatenate(frame_is_spoof), np.concatenate(frame_scores)) > 0.97  # frame-accurate
