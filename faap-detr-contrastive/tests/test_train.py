"""Training CLI: outputs, epsilon in checkpoints, exact resume (train and train-detr), adversarial method,
config errors."""
import copy
import json
import shutil

import faap_detr.main as faap_main
import pytest
import torch
from common_utils.train import ConfigError, init_distributed, load_checkpoint, make_grad_scaler
from faap_detr.datasets.gender_coco import GenderCocoDataset, collate
from faap_detr.engine import train_faap_epoch
from faap_detr.losses.adversarial import discriminator_loss
from faap_detr.main import build_contrastive, build_criterion, build_frozen_detr, epoch_schedule, load_cfg, main, train
from faap_detr.models.discriminator import GenderDiscriminator
from faap_detr.models.generator import PerturbationGenerator, apply_generator
from faap_detr.models.projection_head import ProjectionHead


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


def test_adversarial_step_changes_only_generator_and_discriminator(tiny_cfg_args):
    """One step of the original FAAP objective: the generator and the discriminator move, the frozen DETR (and the
    unused projection head) stay bitwise equal; the discriminator's step is a plain CE step on detached features."""
    path, ov = tiny_cfg_args
    cfg = load_cfg(path, ov + ["method=adversarial"])
    torch.manual_seed(0)
    detr, criterion = build_frozen_detr(cfg), build_criterion(cfg)
    generator = PerturbationGenerator(cfg.generator.base_channels, 0.05)
    proj_head = ProjectionHead(cfg.detr.hidden_dim, cfg.projection.hidden_dim, cfg.projection.output_dim)
    disc = GenderDiscriminator(cfg.detr.hidden_dim)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=cfg.train.lr_g, weight_decay=cfg.train.weight_decay)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.loss.lr_d, weight_decay=cfg.train.weight_decay)
    ds = GenderCocoDataset(cfg.data.root, "train", image_size=64, max_size=96)
    batch = collate([ds[i] for i in (0, 1, 6, 7)])  # two men, two women
    before = {name: copy.deepcopy(m.state_dict()) for name, m in
              {"detr": detr, "generator": generator, "proj_head": proj_head, "disc": disc}.items()}
    # expected discriminator after its step: CE on the features of the unperturbed-generator output, detached
    gen0, disc0 = copy.deepcopy(generator).train(), copy.deepcopy(disc).train()
    ref_opt = torch.optim.AdamW(disc0.parameters(), lr=cfg.loss.lr_d, weight_decay=cfg.train.weight_decay)
    with torch.no_grad():
        feats = detr(apply_generator(gen0, batch[0], batch[1], cfg.generator.space)[0], batch[1])["hs"][-1]
    discriminator_loss(disc0(feats), torch.tensor([t["gender"] for t in batch[2]])).backward()
    torch.nn.utils.clip_grad_norm_(list(disc0.parameters()), cfg.train.max_norm)
    ref_opt.step()

    ctx = init_distributed("cpu")
    metrics = train_faap_epoch(cfg, 0, {"contrastive": 0.0, "beta": 0.5}, detr, generator, proj_head, criterion,
                               build_contrastive(cfg), opt_g, make_grad_scaler("fp32", "cpu"), [batch], ctx, disc,
                               opt_d)
    assert {"loss_disc", "loss_fair", "loss_det"} <= set(metrics) and "loss_contrastive" not in metrics
    assert int(opt_g.state_dict()["state"][0]["step"]) == 1 and int(opt_d.state_dict()["state"][0]["step"]) == 1
    after = {"detr": detr.state_dict(), "generator": generator.state_dict(), "proj_head": proj_head.state_dict(),
             "disc": disc.state_dict()}
    for name in ("detr", "proj_head"):
        for k, v in after[name].items():
            assert torch.equal(before[name][k], v), f"{name}.{k} changed"
    assert all(p.grad is None for p in detr.parameters()) and not detr.training
    for name in ("generator", "disc"):
        assert any(not torch.equal(before[name][k], v) for k, v in after[name].items()), f"{name} did not move"
    for k, v in disc0.state_dict().items():
        torch.testing.assert_close(after["disc"][k], v, rtol=0, atol=1e-6, msg=f"disc.{k}")


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


class Interrupted(Exception):
    """Raised inside the training loop to simulate a job killed mid-run."""


@pytest.mark.parametrize("lr_backbone", [0.0, 1e-4], ids=["cached_backbone", "trained_backbone"])
def test_train_detr_resume_auto_matches_uninterrupted_run(tiny_cfg_args, tmp_path, monkeypatch, lr_backbone):
    """train-detr killed at the end of epoch 2 (checkpoint every 2 epochs: last.pth holds epoch 1), then the same
    command with `--resume auto`: final weights and optimizer state are bitwise those of an uninterrupted run."""
    path, ov = tiny_cfg_args
    args = ov + ["detr.checkpoint=null", "detr_train.epochs=3", "detr_train.checkpoint_every=2",
                 f"detr_train.lr_backbone={lr_backbone}", "detr_train.batch_size=4"]
    full = main_train_detr(path, args + [f"run_dir={tmp_path / 'full'}"])

    part_args = ["train-detr", "--config", str(path), "--resume", "auto", *args, f"run_dir={tmp_path / 'part'}"]
    def killed_after_epoch_2(run_epoch):
        def wrapped(cfg, epoch, *a, **kw):
            metrics = run_epoch(cfg, epoch, *a, **kw)
            if epoch == 2:  # the epoch's work is lost: killed before it is logged and checkpointed
                raise Interrupted
            return metrics
        return wrapped

    for name in ("train_detr_cached_epoch", "train_detr_epoch"):
        monkeypatch.setattr(faap_main, name, killed_after_epoch_2(getattr(faap_main, name)))
    with pytest.raises(Interrupted):
        main(part_args)  # no checkpoint yet: --resume auto starts fresh
    part = tmp_path / "part" / "detr"
    assert load_checkpoint(part / "checkpoints" / "last.pth")["epoch"] == 1 and not (part / "detr.pth").exists()
    monkeypatch.undo()
    main(part_args)
    epochs = [json.loads(line)["epoch"] for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]  # resumed at epoch 2 (a restart would log 0, 1, 0, 1, 2)
    a, b = load_checkpoint(full), load_checkpoint(part / "detr.pth")
    assert a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    oa = load_checkpoint(full.parent / "checkpoints" / "last.pth")["optimizer"]["state"]
    ob = load_checkpoint(part / "checkpoints" / "last.pth")["optimizer"]["state"]
    for i, st in oa.items():
        for k, v in st.items():
            assert torch.equal(v, ob[i][k]), f"optimizer state {i}.{k}"


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
