"""Corpus layouts as distributed (ASVspoof 2019 LA, PartialSpoof, ASVspoof 2021 LA/DF keys, In-the-Wild), audio input
checks, crop / repeat-padding, RawBoost algorithms 3 and 5."""
import numpy as np
import pytest
import soundfile as sf
import torch
from audio_xai.data.dataset import SpoofDataset, iter_utterances, pad_or_crop
from audio_xai.data.layouts import list_utterances, read_asvspoof2021_keys, read_in_the_wild_meta, read_segment_labels
from audio_xai.data.rawboost import isd_additive, lnl_convolutive, rawboost, ssi_additive
from common_utils.data import DataFormatError
from conftest import ROOT, make_cfg


def test_pad_or_crop():
    x = np.arange(5, dtype=np.float32)
    assert pad_or_crop(x, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert pad_or_crop(x, 3).tolist() == [0, 1, 2]


def test_dataset_reads_protocol_and_labels(data_root):
    cfg = make_cfg(data_root, data_root)
    ds = SpoofDataset(cfg.data, "train")
    wave, label, i = ds[1]
    assert wave.shape == (8000,) and wave.dtype == torch.float32 and label == 0 and i == 1
    assert ds.labels == [1, 0] * 4
    seg = read_segment_labels(data_root, "asvspoof2019", "eval")
    utts = list(iter_utterances(cfg.data, "eval"))
    assert len(utts) == 4 and all(len(u[2]) <= 8000 for u in utts)
    # labels of the evaluated stretch only: 20 ms segments covering the (cropped) waveform
    assert all(np.array_equal(u[3], seg[u[0]][: -(-len(u[2]) // 320)]) for u in utts)
    assert any(len(seg[u[0]]) * 320 > 8000 for u in utts)  # some utterances are cropped, with their labels


@pytest.mark.parametrize("case", ["wrong_rate", "empty", "corrupt", "missing"])
def test_bad_audio_names_the_file(tmp_path, data_root, case):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(data_root, root)
    ds = SpoofDataset(make_cfg(root, tmp_path).data, "dev")
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


def _wav(path, n=3200):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.sin(np.arange(n) / 7)).astype(np.float32), 16000)


def test_partialspoof_layout_as_distributed(tmp_path):
    """database/{split}/con_wav/*.wav, protocols/PartialSpoof_LA_cm_protocols/*.trl.txt, segment_labels/*_<res>.npy."""
    proto = tmp_path / "protocols" / "PartialSpoof_LA_cm_protocols"
    proto.mkdir(parents=True)
    (proto / "PartialSpoof.LA.cm.dev.trl.txt").write_text("LA_0079 CON_D_0000001 - CON spoof\n"
                                                          "LA_0079 LA_D_1000001 - - bonafide\n")
    for utt in ("CON_D_0000001", "LA_D_1000001"):
        _wav(tmp_path / "dev" / "con_wav" / f"{utt}.wav")
    (tmp_path / "segment_labels").mkdir()
    for res, lab in ((0.02, "1111000011"), (0.04, "11001")):
        np.save(tmp_path / "segment_labels" / f"dev_seglab_{res}.npy",
                {"CON_D_0000001": np.array(list(lab)), "LA_D_1000001": np.array(["1"] * len(lab))}, allow_pickle=True)
    rows = list_utterances(tmp_path, "partialspoof", "dev")
    assert [(r.utt_id, r.label, r.attack) for r in rows] == [("CON_D_0000001", 0, "CON"), ("LA_D_1000001", 1, "-")]
    assert rows[0].path == tmp_path / "dev" / "con_wav" / "CON_D_0000001.wav"
    assert read_segment_labels(tmp_path, "partialspoof", "dev", 0.04)["CON_D_0000001"].tolist() == [1, 1, 0, 0, 1]
    assert read_segment_labels(tmp_path, "partialspoof", "train") is None
    cfg = make_cfg(tmp_path, tmp_path, "data.layout=partialspoof")
    wave, label, _ = SpoofDataset(cfg.data, "dev")[0]
    assert label == 0 and wave.shape == (8000,)
    with pytest.raises(DataFormatError, match="PartialSpoof.LA.cm.train.trl.txt"):
        list_utterances(tmp_path, "partialspoof", "train")


LA_KEYS = """LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval
LA_0009 LA_E_5000001 none - - bonafide notrim progress
LA_0012 LA_E_5000002 ulaw loc_tx - bonafide trim eval
"""
DF_KEYS = """LA_0043 DF_E_2000026 mp3m4a asvspoof A09 spoof notrim eval traditional_vocoder - - - -
LA_0021 DF_E_2000027 nocodec vcc2018 - bonafide notrim eval - - - - -
"""


@pytest.mark.parametrize("track", ["LA", "DF"])
def test_asvspoof2021_keys(tmp_path, track):
    keys = tmp_path / "keys" / track / "CM" / "trial_metadata.txt"
    keys.parent.mkdir(parents=True)
    keys.write_text(LA_KEYS if track == "LA" else DF_KEYS)
    rows = list_utterances(tmp_path, f"asvspoof2021_{track.lower()}", "eval")
    if track == "LA":
        assert [(r.utt_id, r.label, r.attack) for r in rows] == [("LA_E_9332881", 0, "A07"), ("LA_E_5000002", 1, "-")]
        assert len(read_asvspoof2021_keys(keys, "all")) == 3 and len(read_asvspoof2021_keys(keys, "progress")) == 1
    else:
        assert [(r.utt_id, r.label) for r in rows] == [("DF_E_2000026", 0), ("DF_E_2000027", 1)]
    assert rows[0].path == tmp_path / f"ASVspoof2021_{track}_eval" / "flac" / f"{rows[0].utt_id}.flac"
    assert read_segment_labels(tmp_path, f"asvspoof2021_{track.lower()}", "eval") is None
    with pytest.raises(ValueError, match="only the eval split"):
        list_utterances(tmp_path, f"asvspoof2021_{track.lower()}", "train")


@pytest.mark.parametrize("bad, message", [("LA_0009 LA_E_1 alaw ita_tx A07 fake notrim eval", "line 1.*bad key 'fake'"),
                                          ("LA_0009 LA_E_1 alaw A07 spoof", "line 1.*>= 8 fields"),
                                          ("LA_0009 LA_E_1 alaw ita_tx A07 spoof notrim hidden_track",
                                           "no trials of phase 'eval'")])
def test_asvspoof2021_key_errors_name_file_and_line(tmp_path, bad, message):
    keys = tmp_path / "trial_metadata.txt"
    keys.write_text(bad + "\n")
    with pytest.raises(DataFormatError, match=message.replace("line 1", "trial_metadata.txt:1")):
        read_asvspoof2021_keys(keys)


def test_in_the_wild_meta(tmp_path):
    (tmp_path / "meta.csv").write_text("file,speaker,label\n0.wav,Alec Guinness,spoof\n"
                                       "4.wav,Christopher Hitchens,bona-fide\n")
    for name in ("0.wav", "4.wav"):
        _wav(tmp_path / name)
    rows = list_utterances(tmp_path, "in_the_wild", "eval")
    assert [(r.utt_id, r.label, r.path.name) for r in rows] == [("0", 0, "0.wav"), ("4", 1, "4.wav")]
    cfg = make_cfg(tmp_path, tmp_path, "data.layout=in_the_wild", "data.cut=6400")
    assert [label for _, label, _, seg in iter_utterances(cfg.data, "eval")] == [0, 1]
    (tmp_path / "meta.csv").write_text("file,speaker,label\n0.wav,A,spoof\n1.wav,B,real\n")
    with pytest.raises(DataFormatError, match="meta.csv:3.*bad label 'real'"):
        read_in_the_wild_meta(tmp_path / "meta.csv")
    (tmp_path / "meta.csv").write_text("name,label\n0.wav,spoof\n")
    with pytest.raises(DataFormatError, match="header lacks \\['file'\\]"):
        read_in_the_wild_meta(tmp_path / "meta.csv")


def test_unknown_layout_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="data.layout"):
        list_utterances(tmp_path, "asvspoof2015", "eval")


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


@pytest.mark.parametrize("layout", ["in_the_wild", "asvspoof2021_df"])
def test_score_cli_on_real_layouts(tmp_path, detector_ckpt, layout):
    """`score` reads each layout and scores it with a tcm_add-format checkpoint: one 'utt score' line per trial."""
    from audio_xai.__main__ import main

    if layout == "in_the_wild":
        (tmp_path / "meta.csv").write_text("file,speaker,label\n0.wav,A,spoof\n1.wav,B,bona-fide\n2.wav,C,spoof\n")
        utts = ["0", "1", "2"]
        for u in utts:
            _wav(tmp_path / f"{u}.wav")
    else:
        keys = tmp_path / "keys" / "DF" / "CM" / "trial_metadata.txt"
        keys.parent.mkdir(parents=True)
        keys.write_text(DF_KEYS)
        utts = ["DF_E_2000026", "DF_E_2000027"]
        for u in utts:
            _wav(tmp_path / "ASVspoof2021_DF_eval" / "flac" / f"{u}.flac")
    out = tmp_path / "scores.txt"
    assert main(["score", "--config", str(ROOT / "configs" / "tiny.yaml"), "--checkpoint", str(detector_ckpt),
                 "--split", "eval", "--out", str(out), f"data.root={tmp_path}", f"data.layout={layout}",
                 "data.cut=6400", f"run_dir={tmp_path / 'run'}", "device=cpu"]) == 0
    lines = [line.split() for line in out.read_text().splitlines()]
    assert sorted(u for u, _ in lines) == sorted(utts) and all(np.isfinite(float(s)) for _, s in lines)
