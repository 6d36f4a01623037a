"""Stage 2 trainer: the detector never changes, exact resume, cache == recompute, fixed prototypes = global mean."""
import pytest
import torch
import torch.nn.functional as F
from audio_xai.data.dataset import ASVspoofDataset, pad_or_crop
from audio_xai.evaluate import evaluate_xai
from audio_xai.explain import explain
from audio_xai.trainer.stage2 import frame_embeddings, load_frozen_detector, load_xai, train_stage2
from conftest import ROOT, make_cfg


def cfg_for(data_root, run_dir, ckpt, *extra):
    return make_cfg(data_root, run_dir, f"model.pretrained_checkpoint={ckpt}", "train.epochs=2", "train.batch_size=4",
                    "model.importance_hidden_dim=8", *extra)


@pytest.mark.parametrize("use_cache", [True, False])
def test_detector_is_frozen_and_unchanged(tmp_path, data_root, detector_ckpt, use_cache):
    cfg = cfg_for(data_root, tmp_path, detector_ckpt, f"train.use_cache={use_cache}", "model.prototype_mode=learnable")
    detector = load_frozen_detector(cfg)
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    train_stage2(cfg, detector=detector)
    assert not detector.training and all(not m.training for m in detector.modules())
    assert all(not p.requires_grad and p.grad is None for p in detector.parameters())
    after = detector.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    xai = load_xai(cfg)
    assert xai.prototypes.prototypes.abs().sum() > 0


def test_cache_matches_recompute_and_resume_is_exact(tmp_path, data_root, detector_ckpt):
    cached = cfg_for(data_root, tmp_path / "a", detector_ckpt)
    train_stage2(cached)
    train_stage2(cfg_for(data_root, tmp_path / "b", detector_ckpt, "train.use_cache=false"))
    train_stage2(cfg_for(data_root, tmp_path / "c", detector_ckpt, "train.epochs=1"))
    train_stage2(cfg_for(data_root, tmp_path / "c", detector_ckpt), resume="auto")
    a, b, c = (torch.load(tmp_path / r / "stage2" / "xai.pth", weights_only=True)["model"] for r in "abc")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
        assert torch.equal(a[k], c[k]), k
    assert len((tmp_path / "a" / "stage2" / "metrics.jsonl").read_text().splitlines()) == 2

    # explain and evaluate run on the trained module
    ex = explain(cached)
    assert ex["n_utts"] == 4 and ex["figures"]
    csv = sorted((tmp_path / "a" / "explain" / "eval" / "maps").glob("*.csv"))[0].read_text().splitlines()
    assert csv[0] == "frame,start_s,end_s,importance,sim_bonafide,sim_spoof,label" and len(csv) > 10
    res = evaluate_xai(cached)
    for m in ("importance", "rollout", "grad_x_input"):
        loc = res["methods"][m]["localisation"]
        assert loc["n_utts"] == 2 and 0 <= loc["frame_auc"] <= 1
        assert 0 <= res["methods"][m]["deletion_auc"] <= 1
    assert set(res["statistics"]) == {"bonafide", "spoof"}


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_fixed_prototypes_are_the_training_set_mean(tmp_path, data_root, detector_ckpt, similarity):
    """fixed = mean of the normalised (cosine) or raw (dot, the design's literal form) valid training frames."""
    cfg = cfg_for(data_root, tmp_path, detector_ckpt, "model.prototype_mode=fixed", "train.epochs=1",
                  f"model.similarity={similarity}")
    train_stage2(cfg)
    detector = load_frozen_detector(cfg)
    ds = ASVspoofDataset(data_root, "train", cfg.data.cut)
    sums, counts = torch.zeros(2, detector.LL.in_features), torch.zeros(2)
    for i in range(len(ds)):
        x = ds.load(i, augment=False)
        h = frame_embeddings(detector, torch.from_numpy(pad_or_crop(x, cfg.data.cut))[None])[0]
        n_valid = detector.ssl_model.num_frames(min(len(x), cfg.data.cut))
        frames = F.normalize(h[:n_valid], dim=-1) if similarity == "cosine" else h[:n_valid]
        sums[ds.labels[i]] += frames.sum(0)
        counts[ds.labels[i]] += n_valid
    torch.testing.assert_close(load_xai(cfg).prototypes.prototypes, sums / counts[:, None], rtol=1e-4, atol=1e-5)


def test_cli_accepts_overrides_after_resume(tmp_path, data_root, detector_ckpt):
    from audio_xai.__main__ import main

    main(["train-xai", "--config", str(ROOT / "configs" / "tiny.yaml"), f"run_dir={tmp_path}", "--resume", "auto",
          f"data.root={data_root}", "data.cut=8000", f"model.pretrained_checkpoint={detector_ckpt}", "train.epochs=1"])
    assert (tmp_path / "stage2" / "xai.pth").is_file()
    with pytest.raises(SystemExit):
        main(["train-xai", "--config", str(ROOT / "configs" / "tiny.yaml"), "--bogus"])
