"""Stage 2 trainer on the engine: the detector never changes, kill -9 + resume equals an uninterrupted run, cache ==
recompute, fixed prototypes = global mean, explain / evaluate (with the probe) run on the result."""
import pytest
import torch
import torch.nn.functional as F
from audio_xai.__main__ import main
from audio_xai.data.dataset import SpoofDataset, pad_or_crop
from audio_xai.evaluate import evaluate_xai
from audio_xai.explain import explain
from audio_xai.trainer.stage2 import frame_embeddings, load_frozen_detector, load_xai, train_stage2
from common_utils.train.testing import FAULT_ENV, metrics_rows, run_forked
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


def test_cache_matches_recompute_and_explain_evaluate_run(tmp_path, data_root, detector_ckpt):
    cached = cfg_for(data_root, tmp_path / "a", detector_ckpt)
    train_stage2(cached)
    train_stage2(cfg_for(data_root, tmp_path / "b", detector_ckpt, "train.use_cache=false"))
    a, b = (torch.load(tmp_path / r / "stage2" / "xai.pth", weights_only=True)["model"] for r in "ab")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert len((tmp_path / "a" / "stage2" / "metrics.jsonl").read_text().splitlines()) == 2

    ex = explain(cached)
    assert ex["n_utts"] == 4 and ex["figures"]
    csv = sorted((tmp_path / "a" / "explain" / "eval" / "maps").glob("*.csv"))[0].read_text().splitlines()
    assert csv[0] == "frame,start_s,end_s,importance,sim_bonafide,sim_spoof,label" and len(csv) > 10
    res = evaluate_xai(cached, probe=True)
    for m in ("importance", "rollout", "grad_x_input", "random"):
        r = res["methods"][m]
        assert r["localisation"]["n_utts"] == 2 and 0 <= r["localisation"]["frame_auc"] <= 1
        assert 0 <= r["deletion_auc"] <= 1 and 0 <= r["waveform_deletion_auc"] <= 1
        assert set(r["partialspoof"]) == {"segment_eer_20ms", "segment_eer_40ms", "segment_eer_80ms",
                                          "segment_eer_160ms", "segment_eer_320ms", "segment_eer_640ms",
                                          "utterance_eer", "range_eer"}
    assert set(res["statistics"]) == {"bonafide", "spoof"}
    assert 0 <= res["probe"]["frame_auc"] <= 1 and res["probe"]["n_train_frames"] > 100
    assert 0 <= res["probe"]["frame_auc_utterance_labels"] <= 1
    assert res["probe"]["frame_auc_utterance_labels"] != res["probe"]["frame_auc"]  # a different fit
    assert 0 <= res["prototype_margin_localisation"]["frame_auc"] <= 1


TRAIN_XAI = ["train-xai", "--config", str(ROOT / "configs" / "tiny.yaml"), "data.cut=8000", "train.epochs=3",
             "train.batch_size=3", "train.accum_steps=2", "model.importance_hidden_dim=8"]


@pytest.mark.parametrize("fault", ["after_checkpoint:1", "before_checkpoint:3"])
def test_kill_and_resume_equals_uninterrupted_run(tmp_path, data_root, detector_ckpt, fault):
    args = [*TRAIN_XAI, f"data.root={data_root}", f"model.pretrained_checkpoint={detector_ckpt}"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert run_forked(main, [*args, f"run_dir={ref}"]) == 0
    assert run_forked(main, [*args, f"run_dir={run}"], env={FAULT_ENV: fault}) == -9
    assert run_forked(main, [*args, f"run_dir={run}", "--resume", "auto"]) == 0
    assert metrics_rows(run / "stage2" / "metrics.jsonl") == metrics_rows(ref / "stage2" / "metrics.jsonl")
    a, b = (torch.load(d / "stage2" / "xai.pth", weights_only=True)["model"] for d in (run, ref))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # EMA prototypes included
    state = torch.load(run / "stage2" / "last.pth", weights_only=True)
    assert state["epoch"] == 3 and "prototypes.prototypes" in state["models"]["model"]


def test_missing_detector_checkpoint_names_the_path(tmp_path, data_root):
    cfg = cfg_for(data_root, tmp_path, tmp_path / "nowhere" / "avg_5_best.pth")
    with pytest.raises(FileNotFoundError, match="nowhere/avg_5_best.pth.*train-stage1"):
        train_stage2(cfg)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_fixed_prototypes_are_the_training_set_mean(tmp_path, data_root, detector_ckpt, similarity):
    """fixed = mean of the normalised (cosine) or raw (dot, the design's literal form) valid training frames."""
    cfg = cfg_for(data_root, tmp_path, detector_ckpt, "model.prototype_mode=fixed", "train.epochs=1",
                  f"model.similarity={similarity}")
    train_stage2(cfg)
    detector = load_frozen_detector(cfg)
    ds = SpoofDataset(cfg.data, "train")
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
    main(["train-xai", "--config", str(ROOT / "configs" / "tiny.yaml"), f"run_dir={tmp_path}", "--resume", "auto",
          f"data.root={data_root}", "data.cut=8000", f"model.pretrained_checkpoint={detector_ckpt}", "train.epochs=1"])
    assert (tmp_path / "stage2" / "xai.pth").is_file()
    with pytest.raises(SystemExit):
        main(["train-xai", "--config", str(ROOT / "configs" / "tiny.yaml"), "--bogus"])
