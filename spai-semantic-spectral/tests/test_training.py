"""Trainer: learning on a tiny task, kill-and-resume, accumulation rule, layer decay, two-stage schedule, mixup, CLI."""
import json
import os

import pytest
import torch
from common_utils.train import init_distributed
from common_utils.train.testing import FAULT_ENV, metrics_rows, run_forked
from conftest import CONFIGS
from spai.config import get_config
from spai.data import read_rows
from spai.engine import apply_training_stage, build_mixup, evaluate_rows, mix, train_model
from spai.models import build_cls_model
from spai.optimizer import build_optimizer, layer_id

FAST = ["DATA.BATCH_SIZE", 8, "DATA.AUGMENTED_VIEWS", 1, "TRAIN.WARMUP_EPOCHS", 0, "MODEL.VIT.PATCH_SIZE", 16]


def _train(tiny_data, out, opts, resume=None):
    cfg = get_config(CONFIGS / "tiny.yaml", FAST + list(opts))
    return train_model(cfg, tiny_data / "spai/train.csv", tiny_data, [tiny_data / "spai/test.csv"], [tiny_data],
                       resume=resume, output=out)


def test_tiny_run_learns(tiny_data, tmp_path):
    model, results = _train(tiny_data, tmp_path / "run", ["TRAIN.EPOCHS", 4, "TRAIN.BASE_LR", 2e-3,
                                                          "TRAIN.EVAL_TRAIN_IMAGES", 10**6])
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert lines[0]["train_loss"] > lines[3]["train_loss"]
    # train AUC of the exported weights: eval mode, training images scored as validation scores its images
    cfg = get_config(CONFIGS / "tiny.yaml", FAST)
    rows = read_rows(tiny_data / "spai/train.csv", tiny_data, "train")
    direct = evaluate_rows(model, rows, init_distributed("cpu"), cfg)
    fit = json.loads((tmp_path / "run/train_eval.json").read_text())
    assert fit["n"] == len(rows) and fit["auc"] == pytest.approx(direct["auc"], abs=1e-9)
    assert results["test"]["auc"] > 0.85 and not results["test"]["single_class"]
    assert (tmp_path / "run/config.yaml").is_file() and (tmp_path / "run/best.pth").is_file()


RESUME_ARGS = ["--opt", "TRAIN.EPOCHS", "2", "--opt", "DATA.BATCH_SIZE", "8", "--opt", "DATA.AUGMENTED_VIEWS", "1",
               "--opt", "MODEL.VIT.PATCH_SIZE", "16", "--opt", "TRAIN.WARMUP_EPOCHS", "0",
               "MODEL.FRE.USE_ADAPTIVE_GATING=True", "TRAIN.SEMANTIC_STAGE_EPOCHS=1", "TRAIN.LOSS=focal",
               "TRAIN.FREQUENCY_CONSISTENCY_WEIGHT=0.05", "AUG.MIXUP=0.4", "MODEL.ALLOW_RANDOM_FROZEN=True"]


def _cli_train(tiny_data, out):
    return ["train", "--cfg", str(CONFIGS / "tiny.yaml"), "--data-path", str(tiny_data / "spai/train.csv"),
            "--csv-root-dir", str(tiny_data), "--output", str(out), *RESUME_ARGS]


@pytest.fixture(scope="module")
def reference_run(tiny_data, tmp_path_factory):
    from spai.__main__ import main
    out = tmp_path_factory.mktemp("ref") / "run"
    assert run_forked(main, _cli_train(tiny_data, out)) == 0
    return out


@pytest.mark.parametrize("fault", ["after_checkpoint:1", "before_checkpoint:2", "after_metrics:1"])
def test_killed_run_resumes_to_the_same_metrics_and_weights(tiny_data, tmp_path, reference_run, fault):
    from spai.__main__ import main
    run = tmp_path / "run"
    assert run_forked(main, _cli_train(tiny_data, run), env={FAULT_ENV: fault}) == -9
    assert run_forked(main, _cli_train(tiny_data, run)) != 0  # another run's files: refused without --resume
    assert run_forked(main, [*_cli_train(tiny_data, run), "--resume", "auto"]) == 0
    assert metrics_rows(run / "metrics.jsonl") == metrics_rows(reference_run / "metrics.jsonl")
    ref, got = (torch.load(d / "last.pth", weights_only=True)["models"]["model"] for d in (reference_run, run))
    for k, v in ref.items():
        assert torch.equal(v, got[k]), k
    rows = metrics_rows(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["stage"] == 1 and rows[1]["stage"] == 2


@pytest.mark.parametrize("rule,steps", [("drop", 1), ("mean", 2)])
def test_accumulation_rule(tiny_data, tmp_path, rule, steps):
    """24 training rows, batch 8: 3 batches per epoch in groups of 2. Upstream's rule drops the trailing batch."""
    _train_no_test(tiny_data, tmp_path / rule, ["TRAIN.EPOCHS", 1, "TRAIN.ACCUMULATION_STEPS", 2,
                                                 "TRAIN.ACCUMULATION_RULE", rule])
    row = json.loads((tmp_path / rule / "metrics.jsonl").read_text())
    assert row["steps"] == steps


def test_random_frozen_backbone_is_an_error_unless_allowed(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="PRETRAINED"):
        _train_no_test(tiny_data, tmp_path / "a", ["MODEL.FREEZE_BACKBONE", True])
    with pytest.raises(ValueError, match="semantic tower"):
        _train_no_test(tiny_data, tmp_path / "b", ["MODEL.FRE.USE_ADAPTIVE_GATING", True])
    assert not (tmp_path / "a" / "config.yaml").exists()  # refused before anything was written
    _train_no_test(tiny_data, tmp_path / "c", ["TRAIN.EPOCHS", 1, "MODEL.FREEZE_BACKBONE", True,
                                               "MODEL.ALLOW_RANDOM_FROZEN", True])


def _train_no_test(tiny_data, out, opts, resume=None):
    cfg = get_config(CONFIGS / "tiny.yaml", FAST + list(opts))
    return train_model(cfg, tiny_data / "spai/train.csv", tiny_data, resume=resume, output=out)


def test_layer_decay_uses_real_parameter_names():
    cfg = get_config(CONFIGS / "tiny.yaml", ["MODEL.FRE.EARLY_FUSION_LAYERS", [1]])
    model = build_cls_model(cfg)
    groups = build_optimizer(cfg, model).param_groups
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    depth, decay = cfg.MODEL.VIT.DEPTH, cfg.TRAIN.LAYER_DECAY
    assert scale["mfvit.vit.patch_embed.proj.weight"] == pytest.approx(decay ** (depth + 1))
    assert scale["mfvit.vit.blocks.0.attn.qkv.weight"] == pytest.approx(decay ** depth)
    assert scale["mfvit.vit.blocks.3.mlp.fc1.weight"] == pytest.approx(decay)
    assert scale["mfvit.early_fusion_gates.1.out.weight"] == pytest.approx(decay ** (depth - 1))
    assert scale["cls_head.head.0.weight"] == 1.0
    assert layer_id("mfvit.vit.blocks.2.norm1.weight", depth) == 3
    assert len({round(s, 8) for s in scale.values()}) == depth + 2
    nd = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert "cls_head.head.0.bias" in nd and "cls_head.head.0.weight" not in nd


def test_two_stage_schedule():
    cfg = get_config(CONFIGS / "tiny.yaml", ["MODEL.FRE.USE_HIERARCHICAL_FUSION", True,
                                             "TRAIN.SEMANTIC_STAGE_EPOCHS", 2])
    model = build_cls_model(cfg)
    opt = build_optimizer(cfg, model)
    assert apply_training_stage(model, opt, 1, cfg) == 1
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("mfvit.features_processor.hierarchical_fusion.") for n in trainable)
    assert apply_training_stage(model, opt, 2, cfg) == 2
    assert "cls_head.head.0.weight" in {n for n, p in model.named_parameters() if p.requires_grad}


def test_mixup_and_cutmix_are_applied():
    cfg = get_config(CONFIGS / "tiny.yaml", ["AUG.MIXUP", 0.4, "AUG.CUTMIX", 1.0])
    mixup = build_mixup(cfg)
    x, y = torch.rand(4, 2, 3, 64, 64), torch.tensor([0, 1, 0, 1])
    torch.manual_seed(0)
    mixed, soft = mix(mixup, x.clone(), y)
    assert mixed.shape == x.shape and not torch.equal(mixed, x) and soft.shape == (4,)
    assert torch.all((soft > 0) & (soft < 1))
    assert build_mixup(get_config(CONFIGS / "tiny.yaml")) is None


def test_unknown_config_key_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  FRE:\n    USE_ADAPTIV_GATING: True\n")
    with pytest.raises(ValueError, match="USE_ADAPTIV_GATING") as e:
        get_config(bad)
    assert "bad.yaml" in str(e.value)
    with pytest.raises(ValueError, match="TRAIN.NOPE"):
        get_config(CONFIGS / "tiny.yaml", ["TRAIN.NOPE", 1])
    for path in CONFIGS.glob("*.yaml"):
        assert get_config(path).DATA.IMG_SIZE > 0
    full = get_config(CONFIGS / "spai.yaml")
    assert full.MODEL.FRE.EARLY_FUSION_LAYERS == [2, 4, 6, 8] and full.TRAIN.LAYER_DECAY == 0.85


def test_cli_test_and_infer(tiny_data, tmp_path):
    cfg = get_config(CONFIGS / "tiny.yaml")
    model = build_cls_model(cfg)
    from common_utils.train import save_checkpoint
    from spai.engine import cfg_to_dict
    save_checkpoint({"model": model.state_dict(), "epoch": 0, "config": cfg_to_dict(cfg)}, tmp_path / "m.pth")
    single = tmp_path / "real_only.csv"
    rows = [r for r in (tiny_data / "spai/test.csv").read_text().splitlines()[1:] if r.split(",")[1] == "0"]
    single.write_text("image,class,split\n" + "\n".join(rows) + "\n")
    from spai.__main__ import main
    main(["test", "--model", str(tmp_path / "m.pth"), "--test-csv", str(tiny_data / "spai/test.csv"),
          "--test-csv", str(single), "--test-csv-root-dir", str(tiny_data), "--output", str(tmp_path / "t"),
          "--resize-to", "100"])  # one root for both CSVs (upstream's rule)
    metrics = json.loads((tmp_path / "t/test_metrics.json").read_text())
    assert metrics["test"]["auc"] is not None and metrics["test"]["n_real"] == 4 and metrics["test"]["n_fake"] == 4
    assert metrics["real_only"]["single_class"] and metrics["real_only"]["auc"] is None
    table = (tmp_path / "t/test_metrics.md").read_text().splitlines()
    assert table[0].startswith("| test set | AUC | AP | accuracy") and table[3].startswith("| real_only | n/a | n/a")
    csv_rows = (tmp_path / "t/test_metrics.csv").read_text().splitlines()
    assert csv_rows[0] == "test_set,auc,ap,acc,n_real,n_fake" and csv_rows[2].startswith("real_only,,,")
    local = tmp_path / "local"  # a CSV whose paths are relative to its own folder needs no root
    local.mkdir()
    every = (tiny_data / "spai/test.csv").read_text().splitlines()[1:]
    (local / "set.csv").write_text("image,class,split\n" + "\n".join(
        f"{os.path.relpath(tiny_data / r.split(',')[0], local)},{r.split(',')[1]},test" for r in every) + "\n")
    main(["test", "--model", str(tmp_path / "m.pth"), "--test-csv", str(local / "set.csv"), "--output",
          str(tmp_path / "t2")])
    assert json.loads((tmp_path / "t2/test_metrics.json").read_text())["set"]["n"] == len(every)
    main(["infer", "--model", str(tmp_path / "m.pth"), "--input", str(tiny_data / "images/fake"),
                          "--output", str(tmp_path / "i")])
    lines = (tmp_path / "i/fake.csv").read_text().splitlines()
    assert lines[0] == "image,spai" and len(lines) == 21
    assert all(0 <= float(x.split(",")[1]) <= 1 for x in lines[1:])


def test_tiny_run_learns_synthetic_ai_images(tmp_path):
    """The demo's task at a smaller scale: common_utils' synthetic ai_images (40 real + 40 fake)."""
    from common_utils.synthetic.ai_images import generate
    root = tmp_path / "ai_images"
    generate(root, n=40, seed=0)
    tests = sorted((root / "spai").glob("test_*.csv"))
    cfg = get_config(CONFIGS / "tiny.yaml", ["DATA.AUGMENTED_VIEWS", 2])
    _, results = train_model(cfg, root / "spai/train.csv", root, tests, [root], output=tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert lines[2]["val_auc"] > 0.7 and lines[2]["val_auc"] > lines[0]["val_auc"]
    aucs = [m["auc"] for m in results.values()]
    assert len(aucs) == 3 and sum(aucs) / 3 > 0.6


def _head_auc_on_weak_statistic(input_norm: str, steps: int = 150) -> float:
    """Train only the head path (norm [-> feature_norm] -> cls_head) on pooled vectors whose label is a small shift of
    one near-constant similarity statistic among content features that vary a lot (the demo's situation)."""
    from common_utils.metrics import roc_auc
    torch.manual_seed(0)
    m = build_cls_model(get_config(CONFIGS / "tiny.yaml", ["MODEL.CLS_HEAD.INPUT_NORM", input_norm]))
    g = torch.Generator().manual_seed(1)
    y = (torch.arange(512) % 2).float()
    x = torch.randn(512, m.norm.normalized_shape[0], generator=g)
    x[:, :24] = 0.6 + 0.05 * torch.randn(512, 24, generator=g)
    x[:, 0] += 0.1 * (2 * y - 1)
    mods = [m.norm, getattr(m, "feature_norm", torch.nn.Identity()), m.cls_head]
    opt = torch.optim.AdamW([p for mod in mods for p in mod.parameters()], lr=1e-3)
    head = torch.nn.Sequential(*mods)
    for _ in range(steps):
        i = torch.randint(0, 512, (8,), generator=g)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(x[i]).squeeze(-1), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return roc_auc(y.int().numpy(), head.eval()(x).squeeze(-1).numpy())


def test_batchnorm_head_input_learns_a_weak_statistic_the_layernorm_head_misses():
    assert _head_auc_on_weak_statistic("batchnorm") > 0.95
    assert _head_auc_on_weak_statistic("layernorm") < 0.85  # upstream's head: the defect the option addresses
    m = build_cls_model(get_config(CONFIGS / "tiny.yaml", ["MODEL.CLS_HEAD.INPUT_NORM", "batchnorm"]))
    assert "feature_norm.running_mean" in m.state_dict()
    upstream = build_cls_model(get_config(CONFIGS / "tiny.yaml")).state_dict()
    assert not any(k.startswith("feature_norm.") for k in upstream)
