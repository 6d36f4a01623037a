"""ASVspoof protocols, PartialSpoof segment labels (restricted unpickling), image and audio loading."""

import os
import pickle
import re

import numpy as np
import pytest
import soundfile as sf
from common_utils.data import (
    DataFormatError,
    load_audio,
    load_image,
    read_asvspoof_protocol,
    read_partialspoof_labels,
)
from PIL import Image

# ------------------------------------------------------------------------------------------------ ASVspoof 2019


def test_protocol_reads_bonafide_and_spoof(tmp_path):
    p = tmp_path / "ASVspoof2019.LA.cm.train.trn.txt"
    p.write_text("LA_0079 LA_T_1138215 - - bonafide\n\nLA_0079 LA_T_1271820 - A01 spoof\n")
    rows = read_asvspoof_protocol(p)
    assert [(r.speaker, r.utt_id, r.attack, r.key, r.label) for r in rows] == [
        ("LA_0079", "LA_T_1138215", "-", "bonafide", 1),
        ("LA_0079", "LA_T_1271820", "A01", "spoof", 0),
    ]


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ("LA_0079 LA_T_2 - A01 fake", "bad key 'fake'"),
        ("LA_T_2", "expected 5 fields .* got 1"),
        ("LA_0079 LA_T_1 - A01 spoof", r"utterance 'LA_T_1' is listed twice \(first at line 1\)"),
    ],
)
def test_protocol_errors_name_line(tmp_path, bad, pattern):
    p = tmp_path / "proto.txt"
    p.write_text("LA_0079 LA_T_1 - - bonafide\n" + bad + "\n")
    with pytest.raises(DataFormatError, match=re.escape(f"{p}:2: ") + pattern):
        read_asvspoof_protocol(p)
    with pytest.raises(DataFormatError, match="missing.txt: file not found"):
        read_asvspoof_protocol(tmp_path / "missing.txt")


# ------------------------------------------------------------------------------------------------- PartialSpoof


def save_labels(path, obj):
    np.save(path, obj, allow_pickle=True)  # the official files are np.save of a dict
    return path


def test_partialspoof_labels_round_trip(tmp_path):
    p = save_labels(
        tmp_path / "dev_seglab_0.02.npy",
        {"CON_D_0000001": np.array(["1", "1", "0", "0", "1"]), "LA_D_1": np.array(["1"] * 3)},
    )
    labels = read_partialspoof_labels(p)
    assert set(labels) == {"CON_D_0000001", "LA_D_1"}
    assert labels["CON_D_0000001"].dtype == np.int8
    np.testing.assert_array_equal(labels["CON_D_0000001"], [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(labels["LA_D_1"], [1, 1, 1])


def test_partialspoof_labels_numpy1_pickle(tmp_path):
    """Files written by numpy 1.x (protocol 3, GLOBAL 'numpy.core.multiarray _reconstruct') read the same."""
    obj = np.empty((), dtype=object)
    obj[()] = {"CON_E_1": np.array(["0", "1", "1"])}
    payload = pickle.dumps(obj, protocol=3).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct" in payload
    p = tmp_path / "eval_seglab_0.02.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(payload)
    np.testing.assert_array_equal(read_partialspoof_labels(p)["CON_E_1"], [0, 1, 1])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_partialspoof_rejects_arbitrary_globals(tmp_path):
    p = save_labels(tmp_path / "evil.npy", {"utt": _Evil()})
    with pytest.raises(
        DataFormatError, match=r"evil\.npy: cannot unpickle .*global '(posix|os)\.system' is not allowed"
    ):
        read_partialspoof_labels(p)
    # a raw pickle (not .npy) and a numeric .npy are both rejected with the file named
    raw = tmp_path / "raw.npy"
    raw.write_bytes(pickle.dumps({"utt": ["0"]}))
    with pytest.raises(DataFormatError, match=r"raw\.npy: not a \.npy file"):
        read_partialspoof_labels(raw)
    np.save(tmp_path / "num.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match=r"num\.npy: expected a pickled dict .*float64"):
        read_partialspoof_labels(tmp_path / "num.npy")


def test_partialspoof_bad_values_name_utterance(tmp_path):
    p = save_labels(tmp_path / "bad.npy", {"ok": np.array(["0"]), "utt7": np.array(["0", "2"])})
    with pytest.raises(DataFormatError, match=r"bad\.npy \[utt7\]: segment labels must be '0'/'1', found '2'"):
        read_partialspoof_labels(p)
    p = save_labels(tmp_path / "empty.npy", {"utt8": np.array([], dtype="<U1")})
    with pytest.raises(DataFormatError, match=r"\[utt8\]: segment labels must be a non-empty 1-D array"):
        read_partialspoof_labels(p)
    p = save_labels(tmp_path / "list.npy", np.array(["0", "1"], dtype=object))
    with pytest.raises(DataFormatError, match="expected a non-empty dict"):
        read_partialspoof_labels(p)


# ------------------------------------------------------------------------------------------------------- images


def test_load_image_converts_and_names_bad_files(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.mode == "RGB" and img.size == (7, 9)
    np.testing.assert_array_equal(np.asarray(img), arr)
    assert load_image(tmp_path / "a.png", mode="L").mode == "L"
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataFormatError, match=r"bad\.png: cannot decode image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(DataFormatError, match=r"gone\.png: file not found"):
        load_image(tmp_path / "gone.png")


# -------------------------------------------------------------------------------------------------------- audio


def tone(sr, seconds=0.5, freq=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_audio_mono_and_stereo(tmp_path):
    x = tone(16000)
    sf.write(tmp_path / "m.flac", x, 16000)
    y = load_audio(tmp_path / "m.flac")
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-4)  # 16-bit FLAC quantisation, no normalisation
    stereo = np.stack([x, 0.2 * np.ones_like(x)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), stereo.mean(axis=1), atol=1e-7)


def test_load_audio_sample_rate_check_and_resample(tmp_path):
    sf.write(tmp_path / "a.wav", tone(8000, freq=300.0), 8000, subtype="FLOAT")
    with pytest.raises(DataFormatError, match=r"a\.wav: sample rate is 8000 Hz, expected 16000 Hz"):
        load_audio(tmp_path / "a.wav")
    y = load_audio(tmp_path / "a.wav", resample=True)
    assert y.dtype == np.float32 and y.shape == (8000,)
    ref = tone(16000, freq=300.0)
    np.testing.assert_allclose(y[500:-500], ref[500:-500], atol=2e-3)  # away from the filter's edge effects
    assert load_audio(tmp_path / "a.wav", sample_rate=None).shape == (4000,)


def test_load_audio_empty_corrupt_missing(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataFormatError, match=r"empty\.wav: empty audio"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC" + os.urandom(64))
    with pytest.raises(DataFormatError, match=r"corrupt\.flac: cannot read audio"):
        load_audio(tmp_path / "corrupt.flac")
    with pytest.raises(DataFormatError, match=r"nothere\.flac: file not found"):
        load_audio(tmp_path / "nothere.flac")
    sf.write(tmp_path / "nan.wav", np.full(10, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(DataFormatError, match=r"nan\.wav: audio contains NaN"):
        load_audio(tmp_path / "nan.wav")
