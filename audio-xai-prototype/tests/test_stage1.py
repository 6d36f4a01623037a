"""Stage 1 trainer: exact resume, averaged checkpoint in tcm_add format, score file, config errors."""
import pytest
import torch
from audio_xai.__main__ import main
from audio_xai.model.conformertcm import build_detector, load_tcm_checkpoint
from audio_xai.trainer.stage1 import average_state_dicts, train_stage1
from common_utils.train import ConfigError
from conftest import make_cfg

ARGS = ("stage1.max_epochs=2", "stage1.patience=5", "stage1.batch_size=4", "stage1.n_average=2",
        "stage1.rawboost_algo=5")


def test_resume_reproduces_uninterrupted_run(tmp_path, data_root):
    full = train_stage1(make_cfg(data_root, tmp_path / "full", *ARGS))
    part_cfg = make_cfg(data_root, tmp_path / "part", *ARGS[1:], "stage1.max_epochs=1")
    train_stage1(part_cfg)
    resumed = train_stage1(make_cfg(data_root, tmp_path / "part", *ARGS), resume="auto")
    a = torch.load(tmp_path / "full" / "stage1" / "last.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "stage1" / "last.pth", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full["epochs"] == resumed["epochs"] == 2
    # the trained weights moved, and the average of the 2 best is a loadable tcm_add-format state dict
    avg = torch.load(full["checkpoint"], weights_only=True)
    assert any(k.startswith("ssl_model.model.encoder.pos_conv.0.weight_g") for k in avg)
    epochs = sorted((tmp_path / "full" / "stage1" / "epochs").glob("epoch_*.pth"))
    assert len(epochs) == 2
    manual = average_state_dicts(epochs)
    assert torch.equal(manual["LL.weight"], (torch.load(epochs[0], weights_only=True)["LL.weight"]
                                             + torch.load(epochs[1], weights_only=True)["LL.weight"]) / 2)
    model = build_detector(make_cfg(data_root, tmp_path).detector)
    load_tcm_checkpoint(model, full["checkpoint"])
    lines = (tmp_path / "full" / "stage1" / "scores_eval.txt").read_text().splitlines()
    assert len(lines) == 4 and all(len(line.split()) == 2 for line in lines)
    assert 0.0 <= full["eval_eer"] <= 1.0


def test_config_rejects_unknown_keys(tmp_path, data_root):
    with pytest.raises(ConfigError, match="stage1.learning_rate"):
        make_cfg(data_root, tmp_path, "stage1.learning_rate=0.1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  prototype_mod: ema\n")
    with pytest.raises(ConfigError, match="prototype_mod"):
        main(["train-xai", "--config", str(bad)])
