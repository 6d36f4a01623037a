"""Localisation metrics, frame alignment, attention rollout, deletion / insertion (embedding and waveform), random
maps, map statistics."""
import numpy as np
import pytest
import torch
from audio_xai.evaluate import (
    align,
    attention_rollout,
    embedding_deletion,
    frame_localisation,
    gradient_x_input,
    map_statistics,
    partialspoof_metrics,
    random_maps,
    removal_masks,
    waveform_deletion,
    waveform_replacement,
)
from audio_xai.model.conformertcm import build_detector, freeze, load_tcm_checkpoint
from audio_xai.model.ssl_frontend import XLSR_300M, SSLModel, build_wav2vec2_config
from common_utils.metrics import segment_eer, utterance_eer
from conftest import make_cfg


def test_align_drops_the_tail():
    s, lab = align(np.arange(5.0), np.array([1, 1, 0]))
    assert s.tolist() == [0, 1, 2] and lab.tolist() == [1, 1, 0]
    s, lab = align(np.arange(2.0), np.array([1, 0, 0, 1]))
    assert len(s) == len(lab) == 2


def test_frame_localisation_hand_cases():
    seg = [np.array([1, 1, 0, 0, 1]), np.array([0, 1, 1])]
    perfect = [np.array([0.1, 0.2, 0.9, 0.8, 0.0, 7.0]), np.array([0.7, 0.1, 0.2])]  # tail frame beyond labels
    r = frame_localisation(perfect, seg)
    assert r["frame_auc"] == 1.0 and r["frame_eer"] == 0.0 and r["mean_utt_auc"] == 1.0
    assert r["n_frames"] == 8
    inverted = [-m for m in perfect]
    r = frame_localisation(inverted, seg)
    assert r["frame_auc"] == 0.0 and r["frame_eer"] == 1.0
    # spoof frame 0.15 ranks below the two bona fide 0.2 frames: 2 of 3 x 5 pairs misordered
    r = frame_localisation([np.array([0.1, 0.2, 0.9, 0.15, 0.0]), np.array([0.7, 0.1, 0.2])], seg)
    assert r["frame_auc"] == pytest.approx(1 - 2 / 15)
    assert frame_localisation([], [])["frame_auc"] is None


def test_partialspoof_metrics_use_common_utils_conventions():
    """Segment EERs at each resolution, the utterance EER and the range EER are common_utils.metrics' partialspoof
    ones on the maps, with PartialSpoof labels (1 = bona fide) flipped to 1 = spoof."""
    seg = [np.array([1, 1, 0, 0, 1, 1, 1, 1]), np.ones(8, dtype=int), np.array([1, 1, 1, 1, 1, 0, 0, 0])]
    maps = [np.array([0.1, 0.3, 0.9, 0.7, 0.2, 0.1, 0.0, 0.2]), np.array([0.2, 0.1, 0.4, 0.3, 0.1, 0.0, 0.2, 0.1]),
            np.array([0.0, 0.1, 0.2, 0.1, 0.3, 0.8, 0.6, 0.5])]
    durations = [0.16, 0.16, 0.16]
    r = partialspoof_metrics(maps, seg, durations, [0.02, 0.04, 0.08])
    spoof = [1 - s for s in seg]
    assert r["segment_eer_20ms"] == segment_eer(maps, spoof, 0.02, convention="partialspoof")[0]
    assert r["segment_eer_80ms"] == segment_eer(maps, spoof, 0.08, convention="partialspoof")[0]
    assert r["utterance_eer"] == utterance_eer(maps, spoof, convention="partialspoof")[0]
    assert r["segment_eer_20ms"] == 0.0 and r["utterance_eer"] == 0.0  # every spoof frame outscores bona fide ones
    assert r["range_eer"] == 0.0
    swapped = partialspoof_metrics([-m for m in maps], seg, durations, [0.02])
    assert swapped["segment_eer_20ms"] > 0.5


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


def test_removal_masks_take_the_top_frames():
    m = removal_masks(np.array([0.1, 0.9, 0.5, 0.7]), 2)
    assert m.tolist() == [[False] * 4, [False, True, False, True], [True] * 4]


def test_embedding_deletion_endpoints(detector):
    torch.manual_seed(0)
    wave = 0.1 * torch.randn(1, 6400)
    with torch.no_grad():
        ssl = detector.ssl_model(wave)
        p_bona = detector.classify(ssl)[0].softmax(-1)[0, 1].item()
        p_base = detector.classify(ssl.mean(1, keepdim=True).expand_as(ssl))[0].softmax(-1)[0, 1].item()
    imp = np.random.default_rng(0).random(ssl.shape[1])
    r = embedding_deletion(detector, ssl, imp, "utt_mean", n_steps=4)
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
    with pytest.raises(ValueError, match="deletion_baseline"):
        embedding_deletion(detector, ssl, imp, "blank")


def test_waveform_deletion_replaces_exactly_the_ranked_frames(detector):
    torch.manual_seed(0)
    wave = 0.1 * torch.randn(1, 6400)  # 20 frames of 320 samples
    n_frames = detector.ssl_model.num_frames(6400)
    imp = np.random.default_rng(1).random(n_frames)
    replacement = torch.from_numpy(waveform_replacement(wave[0].numpy(), "noise", seed=0, index=3))
    r, r_flipped = waveform_deletion(detector, wave, [imp, -imp], replacement, n_steps=2, batch_size=3)
    with torch.no_grad():
        p = lambda x: 1 - detector(x)[0].softmax(-1)[0, 1].item()  # noqa: E731
        top = np.argsort(-imp, kind="stable")[: round(n_frames / 2)]
        half = wave.clone()
        for t in top:
            end = 6400 if t == n_frames - 1 else (t + 1) * 320  # the last frame also takes the trailing samples
            half[0, t * 320:end] = replacement[t * 320:end]
        assert r["deletion"][0] == pytest.approx(p(wave), abs=1e-5)
        assert r["deletion"][1] == pytest.approx(p(half), abs=1e-5)
        assert r["deletion"][2] == pytest.approx(p(replacement[None]), abs=1e-5)
        assert r["insertion"][0] == pytest.approx(p(replacement[None]), abs=1e-5)
        assert r["insertion"][2] == pytest.approx(p(wave), abs=1e-5)
        bottom = np.argsort(imp, kind="stable")[: round(n_frames / 2)]
        other = wave.clone()
        for t in bottom:
            end = 6400 if t == n_frames - 1 else (t + 1) * 320
            other[0, t * 320:end] = replacement[t * 320:end]
        assert r_flipped["deletion"][1] == pytest.approx(p(other), abs=1e-5)
        assert r_flipped["deletion"][2] == pytest.approx(r["deletion"][2], abs=1e-6)


def test_waveform_replacements():
    rng = np.random.default_rng(0)
    wave = np.concatenate([0.5 * rng.standard_normal(3200), 0.01 * rng.standard_normal(3200)]).astype(np.float32)
    noise = waveform_replacement(wave, "noise", seed=0, index=0)
    loud, quiet = noise[:3200].std(), noise[3200:].std()
    assert loud == pytest.approx(0.5, rel=0.1) and quiet == pytest.approx(0.01, rel=0.1)  # matched per frame
    assert np.array_equal(noise, waveform_replacement(wave, "noise", seed=0, index=0))
    assert not np.array_equal(noise, waveform_replacement(wave, "noise", seed=0, index=1))
    bona = (0.2 * np.sin(np.arange(1000) / 5)).astype(np.float32)
    other = waveform_replacement(wave, "bonafide", seed=0, index=0, bonafide=bona)
    assert len(other) == len(wave) and np.sqrt((other ** 2).mean()) == pytest.approx(np.sqrt((wave ** 2).mean()),
                                                                                    rel=1e-4)
    assert np.allclose(other[:1000] / other[:1000].std(), bona / bona.std(), atol=1e-4)  # tiled, one gain
    assert not waveform_replacement(wave, "silence", 0, 0).any()
    with pytest.raises(ValueError, match="waveform_baseline"):
        waveform_replacement(wave, "pink", 0, 0)


def test_random_maps_are_seeded():
    a, b = random_maps(12, 0, 5, 2), random_maps(12, 0, 5, 2)
    assert a.shape == (2, 12) and np.array_equal(a, b) and not np.array_equal(a, random_maps(12, 0, 6, 2))


def test_gradient_x_input_leaves_detector_untouched(detector):
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    ssl = torch.randn(2, 9, detector.LL.in_features)
    g = gradient_x_input(detector, ssl)
    assert g.shape == (2, 9) and torch.isfinite(g).all()
    assert all(p.grad is None for p in detector.parameters())
    assert all(torch.equal(before[k], v) for k, v in detector.state_dict().items())


def test_map_statistics():
    maps = [np.array([0.0, 1.0]), np.array([0.5, 0.5]), np.array([0.1, 0.1])]
    s = map_statistics(maps, [0, 0, 1])
    assert s["spoof"]["total"]["mean"] == pytest.approx(1.0) and s["spoof"]["n"] == 2
    assert s["spoof"]["entropy"]["mean"] == pytest.approx(0.5, abs=1e-6)   # (0 + 1) / 2
    assert s["spoof"]["roughness"]["mean"] == pytest.approx(0.5)           # (|1 - 0| + 0) / 2
    assert s["bonafide"]["spread"]["mean"] == 0.0 and s["bonafide"]["total"]["mean"] == pytest.approx(0.2)
    assert s["bonafide"]["roughness"]["mean"] == 0.0


def test_xlsr_frame_counts():
    """66800 samples -> 208 frames (LA/DF crop), 64600 -> 201 (In-the-Wild), 16000 -> 49 (fixture); 20 ms hop."""
    with torch.device("meta"):
        ssl = SSLModel(build_wav2vec2_config(**XLSR_300M))
    assert [ssl.num_frames(n) for n in (66800, 64600, 16000, 16320)] == [208, 201, 49, 50]
