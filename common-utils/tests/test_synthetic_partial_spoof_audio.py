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
            assert x.dtype == np.float32 and 1.0 <= len(x) / 16000 <= 1.6
            assert len(x) == 320 * len(seg)  # one PartialSpoof label per 20 ms
            if r.key == "bonafide":
                assert r.label == 1 and r.attack == "-" and seg.min() == 1
            else:
                assert r.label == 0 and r.attack in partial_spoof_audio.ATTACKS and 0 < (seg == 0).sum() < len(seg)
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])


def test_split_sizes_hold_both_classes():
    assert partial_spoof_audio.split_sizes(6) == [2, 2, 2]
    assert partial_spoof_audio.split_sizes(partial_spoof_audio.DEMO_N) == [288, 72, 120]


@pytest.mark.parametrize("kernel, gain", [("nearest", np.cos(np.pi * 5000 / 16000)),
                                          ("linear", (1 + np.cos(2 * np.pi * 5000 / 16000)) / 2)])
def test_upsampling_images_mirror_the_low_band(kernel, gain):
    """A 3 kHz tone gets an image at 8 - 3 = 5 kHz with the interpolation kernel's gain there, nothing below 4 kHz."""
    t = np.arange(16000) / 16000
    image = partial_spoof_audio.upsampling_images(np.sin(2 * np.pi * 3000 * t), kernel)
    spec = np.abs(np.fft.rfft(image)) / (len(t) / 2)
    assert spec[5000] == pytest.approx(abs(gain), rel=0.02)
    assert spec[:4000].max() < 1e-6 and np.delete(spec, 5000)[4001:].max() < 0.02 * spec[5000]


def test_splice_changes_only_the_labelled_frames():
    rng = np.random.default_rng(0)
    x = partial_spoof_audio.speech_like(rng, 60, 150.0, 1.0)
    y = partial_spoof_audio.splice_vocoded(rng, x, [(10, 30)], "A01")
    a, b = 10 * 320, 30 * 320
    assert np.array_equal(y[:a], x[:a]) and np.array_equal(y[b:], x[b:])
    assert np.abs(y[a:b] - x[a:b]).mean() > 0.1 * np.abs(x[a:b]).mean()


def _band_features(x: np.ndarray) -> np.ndarray:
    """Per 20 ms frame: log power in 16 bands of 500 Hz, relative to the frame's mean band, ``[n_frames, 16]``."""
    frames = x.reshape(-1, 320).astype(np.float64) * np.hanning(320)
    power = np.abs(np.fft.rfft(frames, axis=1))[:, 1:] ** 2
    bands = np.log(power.reshape(len(power), 16, 10).sum(2) + 1e-12)
    return bands - bands.mean(1, keepdims=True)


def test_spoof_frames_are_recognisable_where_labelled(tmp_path):
    """The artefact is frame-accurate: a linear classifier of the frame spectrum, fitted on the training split's
    spoofed utterances with their 20 ms labels, ranks the eval split's spoofed frames above their genuine frames."""
    from sklearn.linear_model import LogisticRegression

    partial_spoof_audio.generate(tmp_path, n=80, seed=0)
    data = {}
    for split, ext in (("train", "trn"), ("eval", "trl")):
        protocol, labels, audio = _split(tmp_path, split, ext)
        spoofed = [r.utt_id for r in protocol if r.key == "spoof"]
        data[split] = (np.concatenate([_band_features(audio[u]) for u in spoofed]),
                       np.concatenate([labels[u] == 0 for u in spoofed]))
    clf = LogisticRegression(max_iter=3000).fit(*data["train"])
    assert roc_auc(data["eval"][1], clf.decision_function(data["eval"][0])) > 0.85
