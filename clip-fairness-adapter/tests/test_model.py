"""CLIP wrapper, Stage 2 model behaviour (corrected defaults vs the design's form)."""
import pytest
import torch
from clip_fairness_adapter.model import (
    AdditiveAdapter,
    CrossAttentionFusionWithDynamicGate,
    FrozenCLIPImageEncoder,
    Stage2IndependentAdapterModel,
)
from common_utils.train import StateDictMismatchError

DESIGN_KEYS = {"clip_features", "stage1_features", "stage2_features", "fused_features", "fused_features_norm", "gate",
               "attn_weights", "cls", "prob", "feat"}


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return FrozenCLIPImageEncoder("tiny", None, token_layers=[1, 2])


def test_encoder_is_frozen_quickgelu_and_last_token_is_the_feature(encoder):
    from open_clip.transformer import QuickGELU

    assert any(isinstance(m, QuickGELU) for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training
    x = torch.randn(2, 3, 128, 128)
    feat, tokens = encoder(x)
    assert feat.shape == (2, 768) and tokens.shape == (2, 2, 768)
    torch.testing.assert_close(tokens[:, -1], feat, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(feat, encoder.visual(x))
    assert (tokens[:, 0] - feat).abs().max() > 1e-3  # an earlier layer differs


def test_encoder_rejects_bad_config(tmp_path):
    with pytest.raises(ValueError, match="token_layers"):
        FrozenCLIPImageEncoder("tiny", None, token_layers=[3])
    with pytest.raises(FileNotFoundError, match="not found"):
        FrozenCLIPImageEncoder("ViT-L-14-quickgelu", str(tmp_path / "missing.bin"))
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="QuickGELU"):
        FrozenCLIPImageEncoder("ViT-L-14", str(tmp_path / "w.bin"))


def test_forward_keys_and_shapes(encoder):
    model = Stage2IndependentAdapterModel(encoder).eval()
    out = model({"image": torch.randn(3, 3, 128, 128)})
    assert DESIGN_KEYS <= set(out)
    assert out["cls"].shape == (3, 2) and out["gate"].shape == (3, 1) and out["attn_weights"].shape == (3, 1, 2)
    assert out["stage1_tokens"].shape == (3, 2, 768)
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


def test_additive_adapter_init_is_near_identity():
    torch.manual_seed(0)
    adapter = AdditiveAdapter(768, 512)
    assert adapter.adapter[6].bias.abs().max().item() == 0.0
    assert 0.008 < adapter.adapter[6].weight.std().item() < 0.012


def test_kv_mode_validation(encoder):
    with pytest.raises(ValueError, match="fusion.kv"):
        Stage2IndependentAdapterModel(None, kv="patch")
    model = Stage2IndependentAdapterModel(None, kv="tokens")
    with pytest.raises(KeyError, match="clip_tokens"):
        model({"clip_feat": torch.randn(2, 768)})


def test_heads_state_dict_roundtrip_is_strict(encoder):
    a, b = Stage2IndependentAdapterModel(encoder), Stage2IndependentAdapterModel(encoder)
    state = a.heads_state_dict()
    assert not any(k.startswith("clip_model.") for k in state)
    b.load_heads_state_dict(state)
    assert all(torch.equal(v, b.heads_state_dict()[k]) for k, v in state.items())
    state.pop("fusion.norm1.weight")
    state["fusion.extra"] = torch.zeros(1)
    expected = r"missing: \['fusion.norm1.weight'\]\n  unexpected: \['fusion.extra'\]"
    with pytest.raises(StateDictMismatchError, match=expected):
        b.load_heads_state_dict(state)


def test_openai_format_file_loads_through_the_openai_loader(tmp_path):
    """A ``.pt`` in OpenAI format goes through open_clip's OpenAI loader (QuickGELU, dims read from the weights).
    That loader rounds weights to fp16 (as OpenAI ships them), so the source model is rounded the same way first."""
    import open_clip
    from open_clip.transformer import QuickGELU

    torch.manual_seed(0)
    src = open_clip.CLIP(768, dict(image_size=128, layers=2, width=64, patch_size=16, head_width=64),
                         dict(context_length=8, vocab_size=64, width=64, heads=1, layers=1), quick_gelu=True).eval()
    src.load_state_dict({k: v.half().float() for k, v in src.state_dict().items()})
    torch.save(src.state_dict(), tmp_path / "ViT-tiny.pt")
    enc = FrozenCLIPImageEncoder("ViT-L-14-quickgelu", str(tmp_path / "ViT-tiny.pt"), token_layers=[2])
    assert any(isinstance(m, QuickGELU) for m in enc.modules())
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(enc(x)[0], src.visual(x), rtol=1e-4, atol=1e-5)
