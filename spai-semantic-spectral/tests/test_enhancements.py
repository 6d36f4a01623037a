"""Semantic-spectral enhancements: zero-init equivalence with base SPAI, each switch matters once non-zero."""
import pytest
import torch
from conftest import CONFIGS
from safetensors.torch import load_file
from spai.config import get_config, load_yaml_config
from spai.models import STATISTICS_12, build_cls_model, load_pretrained
from spai.models.fusion import EarlyFusionGate

ENHANCED = ["MODEL.FRE.EARLY_FUSION_LAYERS", [1, 3], "MODEL.FRE.USE_FREQUENCY_AWARE_ATTENTION", True,
            "MODEL.FRE.USE_ADAPTIVE_GATING", True, "MODEL.FRE.USE_HIERARCHICAL_FUSION", True,
            "MODEL.FRE.USE_EXTENDED_STATISTICS", True, "MODEL.FRE.SEMANTIC_NUM_HEADS", 4,
            "MODEL.SEMANTIC.CLIP_MODEL", "tiny"]


def test_zero_init_enhanced_model_reproduces_upstream_logits(parity_dir):
    """spai.pth-format weights + every enhancement on == base SPAI's stored logits, before any training."""
    cfg = load_yaml_config(parity_dir / "small_config.yaml")
    cfg.defrost()
    cfg.merge_from_list(ENHANCED)
    torch.manual_seed(0)
    model = build_cls_model(cfg)
    load_pretrained(model, parity_dir / "small.pth")
    io = load_file(str(parity_dir / "small_io.safetensors"))
    with torch.no_grad():
        logit = model.eval()([io["b_input"]])
    torch.testing.assert_close(logit, io["b_logit"], atol=1e-5, rtol=0)


def _tiny(opts=()):
    return get_config(CONFIGS / "tiny.yaml", ["MODEL.SEMANTIC.CLIP_MODEL", "tiny", *opts])


def _logits(model, images):
    with torch.no_grad():
        return model.eval()(images)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 64, 128, generator=g), torch.rand(3, 100, 70, generator=g)]


@pytest.mark.parametrize("switch,prefix", [
    (["MODEL.FRE.EARLY_FUSION_LAYERS", [1]], "mfvit.early_fusion_gates."),
    (["MODEL.FRE.USE_FREQUENCY_AWARE_ATTENTION", True], "mfvit.features_processor.cross_attention."),
    (["MODEL.FRE.USE_ADAPTIVE_GATING", True], "mfvit.features_processor.adaptive_gating."),
    (["MODEL.FRE.USE_HIERARCHICAL_FUSION", True], "mfvit.features_processor.hierarchical_fusion."),
    (["MODEL.FRE.USE_EXTENDED_STATISTICS", True], "mfvit.features_processor.extra_statistics."),
])
def test_each_switch_is_identity_at_init_and_changes_output_when_nonzero(switch, prefix, images):
    torch.manual_seed(0)
    base = build_cls_model(_tiny())
    torch.manual_seed(1)
    model = build_cls_model(_tiny(switch))
    new = {k for k in model.state_dict() if k not in base.state_dict()}
    assert new and all(k.startswith((prefix, "mfvit.semantic_tower.")) for k in new)
    model.load_state_dict(base.state_dict() | {k: v for k, v in model.state_dict().items() if k in new})
    ref = _logits(base, images)
    torch.testing.assert_close(_logits(model, images), ref, atol=1e-6, rtol=0)
    with torch.no_grad():  # open the zero-initialised output layers
        for name, p in model.named_parameters():
            if name.startswith(prefix) and (".out" in name or "extra_statistics" in name):
                p.normal_(0, 0.5)
    assert (_logits(model, images) - ref).abs().max() > 1e-4


def test_early_fusion_is_inside_the_vit(images):
    """The gate after block 1 changes the tokens that blocks 2 and 3 see (not a mix after the backbone)."""
    torch.manual_seed(0)
    model = build_cls_model(_tiny(["MODEL.FRE.EARLY_FUSION_LAYERS", [1]])).eval()
    gate = model.mfvit.early_fusion_gates["1"]
    assert isinstance(gate, EarlyFusionGate)
    torch.nn.init.normal_(gate.out.weight, 0, 0.5)
    seen = []
    model.mfvit.vit.blocks[2].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        model.mfvit(x)
        fused = seen[0].clone()
        torch.nn.init.zeros_(gate.out.weight)
        seen.clear()
        model.mfvit(x)
    assert (fused - seen[0]).abs().max() > 1e-3


def test_extended_statistics_named_and_concat_layout():
    assert len(STATISTICS_12) == 12 and len(set(STATISTICS_12)) == 12
    assert STATISTICS_12[:6] == ["mean(orig-low)", "std(orig-low)", "mean(orig-high)", "std(orig-high)",
                                 "mean(low-high)", "std(low-high)"]
    cfg = _tiny(["MODEL.FRE.USE_EXTENDED_STATISTICS", True, "MODEL.FRE.EXTENDED_STATISTICS_MODE", "concat"])
    model = build_cls_model(cfg)
    n, d = len(cfg.MODEL.VIT.INTERMEDIATE_LAYERS), cfg.MODEL.VIT.PROJECTION_DIM
    assert model.mfvit.out_dim == 12 * n + d
    feats, _ = model.eval().mfvit(torch.rand(2, 3, 64, 64))
    assert feats.shape == (2, 12 * n + d)
    stats = feats[:, :12 * n].reshape(2, 12, n)
    assert torch.all(stats[:, 6] <= stats[:, 0] + 1e-6) and torch.all(stats[:, 7] >= stats[:, 0] - 1e-6)


def test_semantic_tower_frozen_and_out_of_optimizer():
    from spai.optimizer import build_optimizer
    cfg = _tiny(["MODEL.FRE.USE_ADAPTIVE_GATING", True])
    model = build_cls_model(cfg).train()
    assert not model.mfvit.semantic_tower.training
    names = {n for g in build_optimizer(cfg, model).param_groups for n in g["names"]}
    assert not any(n.startswith("mfvit.semantic_tower.") for n in names)
    assert any(n.startswith("mfvit.features_processor.adaptive_gating.") for n in names)


def test_bad_fusion_layer_is_rejected():
    with pytest.raises(ValueError, match="EARLY_FUSION_LAYERS"):
        _tiny(["MODEL.FRE.EARLY_FUSION_LAYERS", [9]])


def test_frozen_backbone_passes_gradients_to_early_fusion_gates():
    cfg = _tiny(["MODEL.FREEZE_BACKBONE", True, "MODEL.FRE.EARLY_FUSION_LAYERS", [1]])
    torch.manual_seed(0)
    model = build_cls_model(cfg).train()
    gate = model.mfvit.early_fusion_gates["1"]
    torch.nn.init.normal_(gate.out.weight, 0, 0.1)
    model(torch.rand(2, 3, 64, 128)).sum().backward()
    assert gate.sem_proj.weight.grad is not None and gate.sem_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.mfvit.vit.parameters())
    assert not model.mfvit.vit.training  # frozen backbone: drop-path off


def test_clip_spectral_backbone_option():
    """The design's MODEL_WEIGHTS=clip: frozen open_clip tower's ln_2 outputs as spectral features."""
    from spai.optimizer import build_optimizer
    cfg = _tiny(["MODEL_WEIGHTS", "clip", "MODEL.VIT.EMBED_DIM", 32, "MODEL.VIT.DEPTH", 2,
                 "MODEL.VIT.INTERMEDIATE_LAYERS", [0, 1], "MODEL.FRE.EARLY_FUSION_LAYERS", [0]])
    model = build_cls_model(cfg)
    tokens = model.mfvit.vit(torch.rand(3, 3, 64, 64))
    assert tokens.shape == (3, 2, 16, 32)  # [P, layers, (64/16)^2 tokens, width]
    assert model.eval()([torch.rand(3, 64, 100)]).shape == (1, 1)
    # one CLIP tower: the backbone's tower also gives the semantic context (no second copy)
    assert model.mfvit.semantic() is model.mfvit.vit.tower
    assert not any(k.startswith("mfvit.semantic_tower.") for k in model.state_dict())
    names = {n for g in build_optimizer(cfg, model).param_groups for n in g["names"]}
    assert not any(n.startswith("mfvit.vit.") for n in names) and "mfvit.early_fusion_gates.0.out.weight" in names
    with pytest.raises(ValueError, match="EMBED_DIM"):
        build_cls_model(_tiny(["MODEL_WEIGHTS", "clip"]))


def test_trained_enhanced_checkpoint_must_hold_every_semantic_module(parity_dir, tmp_path):
    """Only a checkpoint with none of the semantic-spectral modules (base SPAI) may leave them zero-initialised."""
    from common_utils.train import StateDictMismatchError, save_checkpoint
    from spai.models.sid import SEMANTIC_MODULES, SEMANTIC_TOWER

    cfg = load_yaml_config(parity_dir / "small_config.yaml")
    cfg.defrost()
    cfg.merge_from_list(ENHANCED)
    state = {k: v for k, v in build_cls_model(cfg).state_dict().items() if not k.startswith(SEMANTIC_TOWER)}
    save_checkpoint({"model": state, "epoch": 1}, tmp_path / "trained.pth")
    assert load_pretrained(build_cls_model(cfg), tmp_path / "trained.pth").epoch == 1
    semantic = sorted(k for k in state if k.startswith(SEMANTIC_MODULES))
    del state[semantic[0]]
    save_checkpoint({"model": state, "epoch": 1}, tmp_path / "partial.pth")
    with pytest.raises(StateDictMismatchError, match=semantic[0]):
        load_pretrained(build_cls_model(cfg), tmp_path / "partial.pth")
