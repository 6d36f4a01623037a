"""Training CLI: outputs, epsilon in checkpoints, exact resume, adversarial method, config errors."""
import json
import shutil

import pytest
import torch
from common_utils.train import ConfigError, load_checkpoint
from faap_detr.main import epoch_schedule, load_cfg, main, train


def test_train_outputs_and_checkpoint_epsilon(tiny_cfg_args):
    path, ov = tiny_cfg_args
    cfg = load_cfg(path, ov + ["train.epochs=3"])
    run = train(cfg)
    for name in ("config.json", "dataset_layout.json", "train_log.jsonl", "metrics.jsonl", "config.yaml"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for key in ("loss_contrastive", "loss_wasserstein", "loss_det", "n_positive", "n_anchor", "score_gap",
                "score_f", "score_m", "delta_linf", "delta_l2", "epsilon", "beta"):
        assert key in rows[-1], key
    layout = json.loads((run / "dataset_layout.json").read_text())
    assert layout["splits"]["train"]["women"]["images"] == 6
    for e in range(3):
        ckpt = load_checkpoint(run / "checkpoints" / f"epoch_{e:04d}.pth")
        assert ckpt["epsilon"] == pytest.approx(epoch_schedule(cfg, e)[0]) and ckpt["perturb_space"] == "pixel"
        assert rows[e]["delta_linf"] <= ckpt["epsilon"] + 1e-6
    assert {"generator", "proj_head", "opt_g", "rng", "scaler", "config"} <= set(ckpt)


def test_resume_reproduces_uninterrupted_run(tiny_cfg_args, tmp_path):
    path, ov = tiny_cfg_args
    full = train(load_cfg(path, ov + ["train.epochs=3", f"run_dir={tmp_path / 'full'}"]))
    # a run of the same config interrupted after epoch 1: its last.pth is the epoch-1 checkpoint
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "epoch_0001.pth", part / "checkpoints" / "last.pth")
    main(["train", "--config", str(path), "--resume", "auto", *ov, "train.epochs=3", f"run_dir={part}"])
    assert not (part / "checkpoints" / "epoch_0000.pth").exists()  # really resumed, not restarted
    a = load_checkpoint(full / "checkpoints" / "last.pth")
    b = load_checkpoint(part / "checkpoints" / "last.pth")
    assert a["epoch"] == b["epoch"] == 2
    for key in ("generator", "proj_head"):
        for k, v in a[key].items():
            assert torch.equal(v, b[key][k]), f"{key}.{k}"


def test_adversarial_method_trains_discriminator(tiny_cfg_args):
    path, ov = tiny_cfg_args
    main(["train", "--config", str(path), "--method", "adversarial", "--device", "cpu", *ov, "train.epochs=1"])
    run = load_cfg(path, ov).run_dir
    ckpt = load_checkpoint(f"{run}/checkpoints/epoch_0000.pth")
    assert "discriminator" in ckpt and "opt_d" in ckpt
    row = json.loads(open(f"{run}/train_log.jsonl").readline())
    assert "loss_disc" in row and "loss_fair" in row


def test_bidirectional_flag(tiny_cfg_args):
    path, ov = tiny_cfg_args
    main(["train", "--config", str(path), "--bidirectional", *ov, "train.epochs=1"])
    cfg = json.loads(open(f"{load_cfg(path, ov).run_dir}/config.json").read())
    assert cfg["bidirectional"] is True


def test_unknown_config_key_is_named(tiny_cfg_args):
    path, ov = tiny_cfg_args
    with pytest.raises(ConfigError, match="train.lr_gg"):
        load_cfg(path, ov + ["train.lr_gg=1"])


def test_train_detr_learns_and_writes_official_format(tiny_cfg_args):
    path, ov = tiny_cfg_args
    out = main_train_detr(path, ov + ["detr.checkpoint=null", "detr_train.epochs=12", "detr_train.lr_backbone=0",
                                      "detr_train.lr=0.001", "detr_train.batch_size=4"])
    rows = [json.loads(line) for line in (out.parent / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and rows[-1]["loss"] < rows[0]["loss"]  # the transformer learns on cached features
    from faap_detr.main import build_frozen_detr
    cfg = load_cfg(path, ov + [f"detr.checkpoint={out}"])
    build_frozen_detr(cfg)  # strict official-format load


def main_train_detr(path, ov):
    from faap_detr.main import train_detr
    return train_detr(load_cfg(path, ov))


def test_gradient_accumulation_steps_once_per_window(tiny_cfg_args, tmp_path):
    path, ov = tiny_cfg_args
    steps = {}
    for accum in (1, 3):
        run = train(load_cfg(path, ov + ["train.epochs=1", "train.batches_per_epoch=3",
                                         f"train.grad_accum_steps={accum}", f"run_dir={tmp_path / str(accum)}"]))
        state = load_checkpoint(run / "checkpoints" / "last.pth")["opt_g"]["state"]
        steps[accum] = int(state[0]["step"])
    assert steps == {1: 3, 3: 1}
