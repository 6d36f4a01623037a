"""Both trainers on the engine: outputs (one file per kind), exports (official DETR layout, FAAP epoch files with
their budget, best.pth chosen on validation), kill -9 + `--resume auto` equal to an uninterrupted run, the
adversarial step, config errors."""
import copy
import json
from pathlib import Path

import pytest
import torch
from common_utils.train import ConfigError, OptimStep, RunStateError, init_distributed, load_checkpoint
from common_utils.train.testing import FAULT_ENV, metrics_rows, run_forked
from faap_detr.datasets.gender_coco import GenderCocoDataset, collate
from faap_detr.engine import train_faap_epoch
from faap_detr.losses.objective import build as build_objective
from faap_detr.main import load_cfg, main
from faap_detr.models.discriminator import GenderDiscriminator
from faap_detr.models.generator import PerturbationGenerator, apply_generator, linf_bound
from faap_detr.models.projection_head import ProjectionHead
from faap_detr.train_faap import build_frozen_detr, epoch_epsilon


def _cli(cmd, path, ov, *extra):
    return [cmd, "--config", str(path), *ov, *extra]


def _weights(path, key):
    return load_checkpoint(path)["models"][key]


def test_train_faap_outputs_exports_and_validation(tiny_cfg_args):
    path, ov = tiny_cfg_args
    cfg = load_cfg(path, ov + ["train.epochs=3"])
    assert main(_cli("train", path, ov, "train.epochs=3")) == 0
    run = cfg.run_dir
    from pathlib import Path

    run = Path(run)
    assert sorted(p.name for p in run.iterdir() if p.is_file()) == [
        "config.yaml", "dataset_layout.json", "last.pth", "metrics.jsonl"]  # one file per kind
    rows = metrics_rows(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in ("loss_contrastive", "loss_wasserstein", "loss_det", "n_positive", "n_anchor", "score_gap", "score_f",
                "score_m", "delta_linf", "delta_l2", "epsilon", "beta", "val_AP_men", "val_AP_women", "val_AP_gap",
                "val_AP_gap_baseline", "best_epoch"):
        assert key in rows[-1], key
    for e, row in enumerate(rows):
        ckpt = load_checkpoint(run / "checkpoints" / f"epoch_{e:04d}.pth")
        assert {"generator", "proj_head", "opt_g", "args"} <= set(ckpt)  # the design's keys
        assert ckpt["epsilon"] == pytest.approx(epoch_epsilon(cfg, e)) == pytest.approx(row["epsilon"])
        assert ckpt["epsilon_units"] == "normalized" and ckpt["perturb_space"] == "pixel" and ckpt["epoch"] == e + 1
        assert row["delta_linf"] <= ckpt["epsilon"] + 1e-6  # in the design's units, whatever the space
    best = load_checkpoint(run / "checkpoints" / "best.pth")
    chosen = rows[-1]["best_epoch"]
    assert best["epoch"] == chosen and best["val"]["val_AP_gap"] == rows[chosen - 1]["val_AP_gap"]
    state = load_checkpoint(run / "last.pth")
    assert state["epoch"] == 3 and set(state["models"]) == {"generator", "proj_head"}
    assert state["extra"]["best"]["epoch"] == chosen


@pytest.mark.parametrize("method,fault", [("contrastive", "after_checkpoint:1"),
                                          ("adversarial", "before_checkpoint:2")])
def test_train_faap_killed_and_resumed_equals_uninterrupted(tiny_cfg_args, tmp_path, method, fault):
    path, ov = tiny_cfg_args
    args = ov + ["train.epochs=3", f"method={method}"]
    ref, run = tmp_path / "ref", tmp_path / "killed"
    assert run_forked(main, _cli("train", path, args, f"run_dir={ref}")) == 0
    assert run_forked(main, _cli("train", path, args, f"run_dir={run}"), env={FAULT_ENV: fault}) == -9
    assert run_forked(main, _cli("train", path, args, f"run_dir={run}", "--resume", "auto")) == 0
    assert metrics_rows(run / "metrics.jsonl") == metrics_rows(ref / "metrics.jsonl")
    for key in ("generator", "discriminator") if method == "adversarial" else ("generator", "proj_head"):
        a, b = _weights(ref / "last.pth", key), _weights(run / "last.pth", key)
        assert all(torch.equal(v, b[k]) for k, v in a.items()), key
    assert load_checkpoint(run / "checkpoints" / "best.pth")["epoch"] == load_checkpoint(
        ref / "checkpoints" / "best.pth")["epoch"]


def test_resume_under_another_budget_is_an_error(tiny_cfg_args):
    path, ov = tiny_cfg_args
    assert main(_cli("train", path, ov, "train.epochs=1")) == 0
    with pytest.raises(RunStateError, match="epsilon"):
        main(_cli("train", path, ov, "train.epochs=2", "epsilon.units=pixel", "--resume", "auto"))


def test_train_detr_learns_and_exports_the_official_layout(tiny_cfg_args):
    path, ov = tiny_cfg_args
    args = ov + ["detr.checkpoint=null", "detr_train.epochs=12", "detr_train.eval_every=6"]
    assert main(_cli("train-detr", path, args)) == 0
    out = load_cfg(path, args).run_dir + "/detr"
    rows = metrics_rows(f"{out}/metrics.jsonl")
    assert len(rows) == 12 and rows[-1]["loss"] < rows[0]["loss"]  # the transformer learns on cached features
    assert "val_AP" in rows[5] and "val_AP" not in rows[4] and "val_AP_women" in rows[-1]
    export = load_checkpoint(f"{out}/detr.pth")
    assert list(export) == ["model"]  # the official release layout
    cfg = load_cfg(path, ov + [f"detr.checkpoint={out}/detr.pth"])
    detr = build_frozen_detr(cfg)[0]  # the official-checkpoint loader (strict)
    assert all(torch.equal(v, export["model"][k]) for k, v in detr.detr.state_dict().items())


@pytest.mark.parametrize("lr_backbone,fault", [(0.0, "after_checkpoint:1"), (1e-4, "after_metrics:1")],
                         ids=["cached_backbone", "trained_backbone"])
def test_train_detr_killed_and_resumed_equals_uninterrupted(tiny_cfg_args, tmp_path, lr_backbone, fault):
    path, ov = tiny_cfg_args
    args = ov + ["detr.checkpoint=null", "detr_train.epochs=3", "detr_train.eval_every=2",
                 f"detr_train.lr_backbone={lr_backbone}"]
    ref, run = tmp_path / "ref", tmp_path / "killed"
    assert run_forked(main, _cli("train-detr", path, args, f"run_dir={ref}")) == 0
    assert run_forked(main, _cli("train-detr", path, args, f"run_dir={run}"), env={FAULT_ENV: fault}) == -9
    assert run_forked(main, _cli("train-detr", path, args, f"run_dir={run}", "--resume", "auto")) == 0
    assert metrics_rows(run / "detr" / "metrics.jsonl") == metrics_rows(ref / "detr" / "metrics.jsonl")
    a, b = load_checkpoint(ref / "detr" / "detr.pth")["model"], load_checkpoint(run / "detr" / "detr.pth")["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_a_second_run_in_the_same_directory_is_refused(tiny_cfg_args):
    path, ov = tiny_cfg_args
    assert main(_cli("train", path, ov, "train.epochs=1")) == 0
    from common_utils.train import RunDirError

    with pytest.raises(RunDirError, match="--resume auto"):
        main(_cli("train", path, ov, "train.epochs=1"))
    assert main(_cli("train", path, ov, "train.epochs=1", "--overwrite")) == 0


def test_adversarial_step_changes_only_generator_and_discriminator(tiny_cfg_args):
    """One step of the original FAAP objective: the generator and the discriminator move, the frozen DETR (and the
    unused projection head) stay bitwise equal; the discriminator's step is a plain CE step on detached features,
    untouched by the generator's loss."""
    path, ov = tiny_cfg_args
    cfg = load_cfg(path, ov + ["method=adversarial", "train.grad_clip=0"])
    torch.manual_seed(0)
    detr, criterion, _ = build_frozen_detr(cfg)
    objective = build_objective(cfg, criterion)
    generator = PerturbationGenerator(cfg.generator.base_channels, 0.05)
    proj_head = ProjectionHead(cfg.detr.hidden_dim, cfg.projection.hidden_dim, cfg.projection.output_dim)
    disc = GenderDiscriminator(cfg.detr.hidden_dim)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.train.lr_d, weight_decay=cfg.train.weight_decay)
    ds = GenderCocoDataset(cfg.data.root, "train", image_size=64, max_size=96)
    batch = collate([ds[i] for i in (0, 1, 6, 7)])  # two men, two women
    before = {name: copy.deepcopy(m.state_dict()) for name, m in
              {"detr": detr, "generator": generator, "proj_head": proj_head, "disc": disc}.items()}
    gen0, disc0 = copy.deepcopy(generator).train(), copy.deepcopy(disc).train()
    ref_opt = torch.optim.AdamW(disc0.parameters(), lr=cfg.train.lr_d, weight_decay=cfg.train.weight_decay)
    with torch.no_grad():
        feats = detr(apply_generator(gen0, batch[0], batch[1], cfg.generator.space)[0], batch[1])["hs"][-1]
    objective.discriminator_loss(disc0(feats), torch.tensor([t["gender"] for t in batch[2]])).backward()
    ref_opt.step()

    ctx = init_distributed("cpu")
    steps = {"generator": OptimStep(opt_g, device="cpu"), "discriminator": OptimStep(opt_d, device="cpu")}
    metrics = train_faap_epoch(0, [batch], detr, generator, objective, steps, ctx, cfg.generator.space,
                               cfg.epsilon.units, proj_head=proj_head, discriminator=disc)
    assert {"loss_disc", "loss_fair", "loss_det"} <= set(metrics) and "loss_contrastive" not in metrics
    assert steps["generator"].optimizer_steps == steps["discriminator"].optimizer_steps == 1
    after = {"detr": detr.state_dict(), "generator": generator.state_dict(), "proj_head": proj_head.state_dict(),
             "disc": disc.state_dict()}
    for name in ("detr", "proj_head"):
        for k, v in after[name].items():
            assert torch.equal(before[name][k], v), f"{name}.{k} changed"
    assert all(p.grad is None for p in detr.parameters()) and not detr.training
    assert all(p.grad is None for p in disc.parameters())  # the generator's loss left none in D
    for name in ("generator", "disc"):
        assert any(not torch.equal(before[name][k], v) for k, v in after[name].items()), f"{name} did not move"
    for k, v in disc0.state_dict().items():
        torch.testing.assert_close(after["disc"][k], v, rtol=0, atol=1e-6, msg=f"disc.{k}")


def test_bidirectional_flag_and_accumulation(tiny_cfg_args, tmp_path):
    path, ov = tiny_cfg_args
    args = ov + ["train.epochs=1", "train.batches_per_epoch=3", "train.accum_steps=2", f"run_dir={tmp_path / 'b'}"]
    assert main(_cli("train", path, args, "--bidirectional")) == 0
    state = load_checkpoint(tmp_path / "b" / "last.pth")
    assert state["config"]["loss"]["bidirectional"] is True
    assert state["steps"]["generator"] == 2  # groups of 2 + the trailing 1


def test_config_errors_name_the_key(tiny_cfg_args):
    path, ov = tiny_cfg_args
    with pytest.raises(ConfigError, match="train.lr_gg"):
        load_cfg(path, ov + ["train.lr_gg=1"])
    with pytest.raises(ValueError, match="epsilon.units"):
        linf_bound(0.1, "pixels", "pixel")
    with pytest.raises(ValueError, match="generator.space"):
        main(_cli("train", path, ov, "generator.space=rgb"))
    json.dumps(load_cfg(path, ov).detr.num_queries)


def test_cached_backbone_features_are_each_image_alone(gender_data):
    """Images of one size share a backbone batch: each cached feature equals the image's own forward pass."""
    from faap_detr.datasets.gender_coco import flip_item
    from faap_detr.engine import backbone_features
    from faap_detr.models.detr import build, normalize

    cfg = load_cfg(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml", [f"data.root={gender_data}"])
    torch.manual_seed(0)
    model = build(cfg)[0].eval()
    ds = GenderCocoDataset(gender_data, "train", image_size=48, max_size=64)
    feats, targets = backbone_features(model, ds, "cpu", flip=True, batch_size=3)
    assert len(feats) == 2 * len(ds) and len(targets) == 2 * len(ds)
    for i in (0, len(ds) - 1, len(ds), 2 * len(ds) - 1):
        pixels, target = ds[i % len(ds)]
        if i >= len(ds):
            pixels, target = flip_item(pixels, target)
        with torch.no_grad():
            alone = model.backbone[0].body(normalize(pixels[None]))["0"][0]
        torch.testing.assert_close(feats[i], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(targets[i]["boxes"], target["boxes"])
