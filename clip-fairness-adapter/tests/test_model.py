"""CLIP wrapper, Stage 2 model behaviour (corrected defaults vs the design's form)."""
import pytest
import torch
from clip_fairness_adapter.model import (
    AdditiveAdapter,
    CrossAttentionFusionWithDynamicGate,
    FrozenCLIPImageEncoder,
    Stage2IndependentAdapterModel,
)
from clip_fairness_adapter.model.clip_backbone import is_torchscript_archive, register_model_config
from common_utils.train import StateDictMismatchError
from conftest import TINY_CLIP

DESIGN_KEYS = {"clip_features", "stage1_features", "stage2_features", "fused_features", "fused_features_norm", "gate",
               "attn_weights", "cls", "prob", "feat"}


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return FrozenCLIPImageEncoder("TinyCLIP", None, token_layers=[1, 2], model_config=str(TINY_CLIP))


def test_encoder_is_frozen_quickgelu_and_last_token_is_the_feature(encoder):
    from open_clip.transformer import QuickGELU

    assert any(isinstance(m, QuickGELU) for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training
    x = torch.randn(2, 3, 128, 128)
    feat, tokens = encoder(x)
    assert encoder.output_dim == 128  # the feature size comes from the tower (TinyCLIP's embed_dim)
    assert feat.shape == (2, 128) and tokens.shape == (2, 2, 128)
    torch.testing.assert_close(tokens[:, -1], feat, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(feat, encoder.visual(x))
    assert (tokens[:, 0] - feat).abs().max() > 1e-3  # an earlier layer differs


def test_encoder_rejects_bad_config(tmp_path):
    with pytest.raises(ValueError, match="token_layers"):
        FrozenCLIPImageEncoder("TinyCLIP", None, token_layers=[3], model_config=str(TINY_CLIP))
    with pytest.raises(ValueError, match="not an open_clip model"):
        FrozenCLIPImageEncoder("NoSuchCLIP", None)
    with pytest.raises(FileNotFoundError, match="model config not found"):
        FrozenCLIPImageEncoder("TinyCLIP", None, model_config=str(tmp_path / "none.json"))
    with pytest.raises(FileNotFoundError, match="not found"):
        FrozenCLIPImageEncoder("ViT-L-14-quickgelu", str(tmp_path / "missing.bin"))
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="QuickGELU"):
        FrozenCLIPImageEncoder("ViT-L-14", str(tmp_path / "w.bin"))


def test_forward_keys_and_shapes(encoder):
    model = Stage2IndependentAdapterModel(encoder, encoder.output_dim, 64, 32, (32, 16), fusion_num_heads=4).eval()
    out = model({"image": torch.randn(3, 3, 128, 128)})
    assert DESIGN_KEYS <= set(out)
    assert out["cls"].shape == (3, 2) and out["gate"].shape == (3, 1) and out["attn_weights"].shape == (3, 1, 2)
    assert out["stage1_tokens"].shape == (3, 2, 128) and out["fused_features"].shape == (3, 128)
    torch.testing.assert_close(out["stage1_features"].norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out["prob"], out["cls"].softmax(1)[:, 1])


def test_attention_depends_on_query_by_default_not_in_design_mode():
    torch.manual_seed(0)
    s1, tokens = torch.randn(4, 768), torch.randn(4, 3, 768)
    q1, q2 = torch.randn(4, 768), torch.randn(4, 768)
    fusion = CrossAttentionFusionWithDynamicGate(768, 8, dropout=0.0).eval()
    _, _, w1, _ = fusion(q1, s1, tokens)
    _, _, w2, _ = fusion(q2, s1, tokens)
    assert (w1 - w2).abs().max() > 1e-3
    torch.testing.assert_close(w1.sum(-1), torch.ones(4, 1))
    _, _, g1, e1 = fusion(q1, s1)  # design: a single key/value -> weight 1, output independent of the query
    _, _, g2, e2 = fusion(q2, s1)
    assert torch.equal(g1, torch.ones(4, 1, 1)) and torch.equal(g2, g1)
    torch.testing.assert_close(e1["attn_out"], e2["attn_out"])


@pytest.mark.parametrize("bias", [0.0, 1.0])
def test_gate_bias_option(bias):
    fusion = CrossAttentionFusionWithDynamicGate(768, 8, gate_bias=bias)
    assert fusion.gate_net[2].bias.item() == bias


def test_gate_mixes_unit_norm_features_by_default_and_raw_ones_in_design_mode():
    """Default: the gate mixes the unit-norm Stage 1 feature with x scaled to unit norm (so the gate is Stage 1's
    share); design mode: x as the LayerNorm leaves it (norm ~sqrt(768))."""
    torch.manual_seed(0)
    s1 = torch.nn.functional.normalize(torch.randn(4, 768), dim=-1)
    q = torch.randn(4, 768)
    unit = CrossAttentionFusionWithDynamicGate(768, 8, dropout=0.0).eval()
    design = CrossAttentionFusionWithDynamicGate(768, 8, dropout=0.0, mix="design").eval()
    design.load_state_dict(unit.state_dict())
    fused_u, gate, _, extras = unit(q, s1)
    fused_d, _, _, _ = design(q, s1)
    x = extras["norm2_out"].squeeze(1)
    torch.testing.assert_close(fused_u, gate * s1 + (1 - gate) * torch.nn.functional.normalize(x, dim=-1))
    torch.testing.assert_close(fused_d, gate * s1 + (1 - gate) * x)
    assert x.norm(dim=-1).min() > 20 and fused_u.norm(dim=-1).max() <= 1 + 1e-5
    with pytest.raises(ValueError, match="fusion.mix"):
        CrossAttentionFusionWithDynamicGate(768, 8, mix="sum")


def test_additive_adapter_init_is_near_identity():
    torch.manual_seed(0)
    adapter = AdditiveAdapter(768, 512)
    assert adapter.adapter[6].bias.abs().max().item() == 0.0
    assert 0.008 < adapter.adapter[6].weight.std().item() < 0.012


def test_kv_mode_validation(encoder):
    with pytest.raises(ValueError, match="fusion.kv"):
        Stage2IndependentAdapterModel(None, 768, kv="patch")
    model = Stage2IndependentAdapterModel(None, 768, kv="tokens")
    with pytest.raises(KeyError, match="clip_tokens"):
        model({"clip_feat": torch.randn(2, 768)})


def test_heads_state_dict_roundtrip_is_strict(encoder):
    a = Stage2IndependentAdapterModel(encoder, encoder.output_dim, fusion_num_heads=4)
    b = Stage2IndependentAdapterModel(encoder, encoder.output_dim, fusion_num_heads=4)
    state = a.heads_state_dict()
    assert not any(k.startswith("clip_model.") for k in state)
    b.load_heads_state_dict(state)
    assert all(torch.equal(v, b.heads_state_dict()[k]) for k, v in state.items())
    state.pop("fusion.norm1.weight")
    state["fusion.extra"] = torch.zeros(1)
    expected = r"missing: \['fusion.norm1.weight'\]\n  unexpected: \['fusion.extra'\]"
    with pytest.raises(StateDictMismatchError, match=expected):
        b.load_heads_state_dict(state)


def test_torchscript_archives_are_detected_and_state_dicts_load_strictly(tmp_path):
    """OpenAI's ViT-L-14.pt is TorchScript (a zip with code/ and constants.pkl); a plain torch.save is not. A state
    dict loads strictly into the named open_clip config."""
    import open_clip

    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    assert is_torchscript_archive(tmp_path / "scripted.pt") and not is_torchscript_archive(tmp_path / "plain.pt")
    torch.manual_seed(0)
    register_model_config(str(TINY_CLIP))
    src = open_clip.create_model("TinyCLIP").eval()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}},
               tmp_path / "epoch_3.pt")  # open_clip's training checkpoint format
    enc = FrozenCLIPImageEncoder("TinyCLIP", str(tmp_path / "epoch_3.pt"), token_layers=[2],
                                 model_config=str(TINY_CLIP))
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(enc(x)[0], src.visual(x))


def test_open_clip_folder_loads_through_local_dir(tmp_path):
    """The demo's pre-trained model: an open_clip folder (config + safetensors) read by open_clip's local-dir loader;
    clip.pretrained must then be null."""
    import open_clip
    from clip_fairness_adapter.trainer.clip_pretrain import export_open_clip

    register_model_config(str(TINY_CLIP))
    torch.manual_seed(1)
    src = open_clip.create_model("TinyCLIP").eval()
    folder = export_open_clip(src, "TinyCLIP", tmp_path / "clip")
    enc = FrozenCLIPImageEncoder(f"local-dir:{folder}", None, token_layers=[1, 2])
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(enc(x)[0], src.visual(x))
    with pytest.raises(ValueError, match="must be null"):
        FrozenCLIPImageEncoder(f"local-dir:{folder}", str(tmp_path / "w.bin"))
