"""Localisation metric, frame alignment, attention rollout, deletion / insertion, interpretation statistics."""
import numpy as np
import pytest
import torch
from audio_xai.evaluate import (
    align,
    attention_rollout,
    deletion_insertion,
    gradient_x_input,
    importance_statistics,
    localisation,
)
from audio_xai.model.conformertcm import build_detector, freeze, load_tcm_checkpoint
from audio_xai.model.ssl_frontend import SSLModel, build_wav2vec2_config
from conftest import make_cfg


def test_align_drops_the_tail():
    s, lab = align(np.arange(5.0), np.array([1, 1, 0]))
    assert s.tolist() == [0, 1, 2] and lab.tolist() == [1, 1, 0]
    s, lab = align(np.arange(2.0), np.array([1, 0, 0, 1]))
    assert len(s) == len(lab) == 2


def test_localisation_hand_cases():
    seg = [np.array([1, 1, 0, 0, 1]), np.array([0, 1, 1])]
    perfect = [np.array([0.1, 0.2, 0.9, 0.8, 0.0, 7.0]), np.array([0.7, 0.1, 0.2])]  # tail frame beyond labels
    r = localisation(perfect, seg)
    assert r["frame_auc"] == 1.0 and r["frame_eer"] == 0.0 and r["mean_utt_auc"] == 1.0
    assert r["n_frames"] == 8
    inverted = [-m for m in perfect]
    r = localisation(inverted, seg)
    assert r["frame_auc"] == 0.0 and r["frame_eer"] == 1.0
    # spoof frame 0.15 ranks below the two bona fide 0.2 frames: 2 of 3 x 5 pairs misordered
    r = localisation([np.array([0.1, 0.2, 0.9, 0.15, 0.0]), np.array([0.7, 0.1, 0.2])], seg)
    assert r["frame_auc"] == pytest.approx(1 - 2 / 15)
    assert localisation([], [])["frame_auc"] is None


def test_attention_rollout_hand_case():
    B, H, T, n_ht = 1, 2, 3, 2
    N = 1 + T + n_ht
    attn = torch.zeros(B, H, N, N)
    attn[..., torch.arange(N), torch.arange(N)] = 1.0
    attn[:, :, 0] = 0.0
    attn[:, :, 0, 2] = 1.0                                   # class token attends to frame 1 only
    r = attention_rollout([attn, attn], T)
    assert r.shape == (1, T)
    assert r[0].argmax().item() == 1 and r[0, 0] == 0 and r[0, 2] == 0
    assert r[0, 1].item() == pytest.approx(0.5 * 0.5 + 0.5 * 0.5 + 0.5 * 0.5)  # (0.5A+0.5I)^2, cls->frame1


@pytest.fixture(scope="module")
def detector(data_root, detector_ckpt, tmp_path_factory):
    cfg = make_cfg(data_root, tmp_path_factory.mktemp("ev"))
    model = build_detector(cfg.detector)
    load_tcm_checkpoint(model, detector_ckpt)
    return freeze(model)


def test_deletion_insertion_endpoints(detector):
    torch.manual_seed(0)
    wave = 0.1 * torch.randn(1, 6400)
    with torch.no_grad():
        ssl = detector.ssl_model(wave)
        p_bona = detector.classify(ssl)[0].softmax(-1)[0, 1].item()
        p_base = detector.classify(ssl.mean(1, keepdim=True).expand_as(ssl))[0].softmax(-1)[0, 1].item()
    imp = np.random.default_rng(0).random(ssl.shape[1])
    r = deletion_insertion(detector, ssl, imp, "utt_mean", n_steps=4)
    assert r["deletion"][0] == pytest.approx(1 - p_bona, abs=1e-5)
    assert r["insertion"][-1] == pytest.approx(1 - p_bona, abs=1e-5)
    assert r["deletion"][-1] == pytest.approx(1 - p_base, abs=1e-5)
    assert r["insertion"][0] == pytest.approx(1 - p_base, abs=1e-5)
    assert r["deletion_auc"] == pytest.approx(np.trapezoid(r["deletion"], dx=0.25))
    # deleting the top half by importance = removing exactly those frames
    half = ssl.clone()
    top = np.argsort(-imp, kind="stable")[: round(ssl.shape[1] / 2)]
    half[0, top] = ssl[0].mean(0)
    with torch.no_grad():
        p_half = detector.classify(half)[0].softmax(-1)[0, 1].item()
    assert r["deletion"][2] == pytest.approx(1 - p_half, abs=1e-5)
    r = deletion_insertion(detector, ssl, imp, "silence", n_steps=2, wave=wave)
    with torch.no_grad():
        p_silence = detector(torch.zeros_like(wave))[0].softmax(-1)[0, 1].item()
    assert r["deletion"][-1] == pytest.approx(1 - p_silence, abs=1e-5)
    assert r["deletion"][0] == pytest.approx(1 - p_bona, abs=1e-5)
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion(detector, ssl, imp, "blank")


def test_gradient_x_input_leaves_detector_untouched(detector):
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    ssl = torch.randn(2, 9, detector.LL.in_features)
    g = gradient_x_input(detector, ssl)
    assert g.shape == (2, 9) and torch.isfinite(g).all()
    assert all(p.grad is None for p in detector.parameters())
    assert all(torch.equal(before[k], v) for k, v in detector.state_dict().items())


def test_importance_statistics():
    maps = [np.array([0.0, 1.0]), np.array([0.5, 0.5]), np.array([0.1, 0.1])]
    s = importance_statistics(maps, [0, 0, 1])
    assert s["spoof"]["total"]["mean"] == pytest.approx(1.0) and s["spoof"]["n"] == 2
    assert s["spoof"]["entropy"]["mean"] == pytest.approx(0.5, abs=1e-6)   # (0 + 1) / 2
    assert s["bonafide"]["spread"]["mean"] == 0.0 and s["bonafide"]["total"]["mean"] == pytest.approx(0.2)


def test_xlsr_frame_counts():
    """66800 samples -> 208 frames (LA/DF crop), 64600 -> 201 (In-the-Wild), 16000 -> 49 (fixture); 20 ms hop."""
    with torch.device("meta"):
        ssl = SSLModel(build_wav2vec2_config("xlsr_300m"))
    assert [ssl.num_frames(n) for n in (66800, 64600, 16000, 16320)] == [208, 201, 49, 50]
