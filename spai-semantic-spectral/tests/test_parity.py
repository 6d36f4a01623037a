"""Numerical parity with outputs of the upstream SPAI code (shared/fixtures/parity/spai)."""
import json

import pytest
import torch
from common_utils.train import StateDictMismatchError
from safetensors.torch import load_file
from spai.config import load_yaml_config
from spai.models import build_cls_model, load_pretrained
from spai.models.filters import filter_image_frequencies, generate_circular_mask
from spai.utils import UNUSED_UPSTREAM_KEYS, load_checkpoint_file, load_state_dict_checked

TOL_FEAT, TOL_LOGIT = 1e-4, 1e-5


@pytest.fixture(scope="module")
def io(parity_dir):
    return load_file(str(parity_dir / "small_io.safetensors"))


@pytest.fixture(scope="module")
def small(parity_dir):
    cfg = load_yaml_config(parity_dir / "small_config.yaml")
    model = build_cls_model(cfg)
    assert load_pretrained(model, parity_dir / "small.pth").epoch == 3
    return cfg, model.eval()


@pytest.fixture(scope="module")
def list_call(small, io):
    """One list call over a, b, c (chunks of 4 patches) with hooks on the intermediate modules."""
    _, model = small
    got = {"feat": [], "vit": [], "norm": []}
    hooks = [model.mfvit.register_forward_hook(lambda m, i, o: got["feat"].append(o[0])),
             model.mfvit.vit.register_forward_hook(lambda m, i, o: got["vit"].append(o)),
             model.norm.register_forward_hook(lambda m, i, o: got["norm"].append((i[0], o)))]
    with torch.no_grad():
        logits = model([io["a_input"], io["b_input"], io["c_input"]], 4)
    for h in hooks:
        h.remove()
    return logits, torch.cat(got["feat"]), got["vit"][:3], got["norm"]


def test_filters(io):
    mask = generate_circular_mask(224, 16)
    assert torch.equal(mask, io["filter_mask"]) and int(mask.sum()) == 856
    low, high = filter_image_frequencies(io["filter_in"], mask)
    torch.testing.assert_close(low, io["filter_low"], atol=1e-6, rtol=0)
    torch.testing.assert_close(high, io["filter_high"], atol=1e-6, rtol=0)
    torch.testing.assert_close(low.clamp(0, 1), io["filter_low_clamped"], atol=1e-6, rtol=0)
    torch.testing.assert_close(high.clamp(0, 1), io["filter_high_clamped"], atol=1e-6, rtol=0)


def test_vit_tokens_first_patch(list_call, io):
    _, _, vit_outs, _ = list_call  # first chunk: orig, low, high passes; patch 0 is a's top-left
    for out, name in zip(vit_outs, ("orig", "low", "high")):
        torch.testing.assert_close(out[:1], io[f"a_patch0_vit_{name}"], atol=TOL_FEAT, rtol=0)


def test_patch_features_and_logits(list_call, io):
    logits, feats, _, norm = list_call
    a, b, c = feats.split([6, 5, 4])  # a: 2x3 grid, b: five-crop fallback, c: 2x2 grid with remainder dropped
    torch.testing.assert_close(a, io["a_patch_features"], atol=TOL_FEAT, rtol=0)
    torch.testing.assert_close(a[:, :24], io["a_similarity_stats"], atol=TOL_FEAT, rtol=0)
    torch.testing.assert_close(a[:, 24:], io["a_context_vector"], atol=TOL_FEAT, rtol=0)
    torch.testing.assert_close(b, io["b_patch_features"], atol=TOL_FEAT, rtol=0)
    torch.testing.assert_close(c, io["c_patch_features"], atol=TOL_FEAT, rtol=0)
    torch.testing.assert_close(logits, io["abc_list_logits"], atol=TOL_LOGIT, rtol=0)
    for i, n in enumerate("abc"):
        torch.testing.assert_close(logits[i:i + 1], io[f"{n}_logit"], atol=TOL_LOGIT, rtol=0)
    pooled, normed = norm[0]
    torch.testing.assert_close(pooled[:1], io["a_sca_pooled"], atol=TOL_FEAT, rtol=0)
    torch.testing.assert_close(normed[:1], io["a_sca_normed"], atol=TOL_FEAT, rtol=0)


def test_sca_attention(small, io):
    _, model = small
    with torch.no_grad():
        _, attn = model.patches_attention(io["a_patch_features"][None], return_attn=True)
    torch.testing.assert_close(attn, io["a_sca_attn"], atol=1e-6, rtol=0)


def test_single_image_call_matches_arbitrary_resolution_path(small, io):
    _, model = small
    with torch.no_grad():
        logit = model([io["b_input"]])  # five-crop path, default FEATURE_EXTRACTION_BATCH
    torch.testing.assert_close(logit, io["b_logit"], atol=TOL_LOGIT, rtol=0)


def test_released_checkpoint_layout_loads(parity_dir):
    """Every key of the released configuration (full_keys.json) loads with the right shape: a meta-device
    state dict in that layout goes through the real loader into the full-size model."""
    keys = json.loads((parity_dir / "full_keys.json").read_text())
    cfg = load_yaml_config(parity_dir / "small_config.yaml")
    cfg.defrost()
    cfg.merge_from_list(["MODEL.VIT.EMBED_DIM", 768, "MODEL.VIT.DEPTH", 12, "MODEL.VIT.NUM_HEADS", 12,
                         "MODEL.VIT.INTERMEDIATE_LAYERS", list(range(12)), "MODEL.VIT.PROJECTION_DIM", 1024,
                         "MODEL.PATCH_VIT.ATTN_EMBED_DIM", 1536, "MODEL.PATCH_VIT.NUM_HEADS", 12])
    with torch.device("meta"):
        model = build_cls_model(cfg)
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    sd = {k: torch.empty(v["shape"], dtype=dtypes[v["dtype"]], device="meta") for k, v in keys.items()}
    load_state_dict_checked(model, sd, source="full_keys.json", assign=True)
    own = model.state_dict()
    assert len(keys) == 324 and len(own) == 324 - 43  # the 43 never-used upstream tensors are dropped by name
    for k, v in own.items():
        assert list(v.shape) == keys[k]["shape"] and v.dtype == dtypes[keys[k]["dtype"]], k
    assert own["to_kv.weight"].shape == (3072, 1096) and own["cls_head.head.0.weight"].shape == (3288, 1096)
    assert UNUSED_UPSTREAM_KEYS


def test_mismatched_checkpoint_lists_keys(parity_dir):
    sd = load_checkpoint_file(parity_dir / "small.pth")["model"]
    cfg = load_yaml_config(parity_dir / "small_config.yaml")
    cfg.defrost()
    cfg.merge_from_list(["MODEL.CLS_HEAD.MLP_RATIO", 2])
    model = build_cls_model(cfg)
    bad = dict(sd)
    bad.pop("norm.bias")
    bad["surprise.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError) as e:
        load_state_dict_checked(model, bad, source="small.pth")
    msg = str(e.value)
    assert "norm.bias" in msg and "surprise.weight" in msg and "cls_head.head.0.weight" in msg


def test_restricted_unpickler_refuses_other_classes(tmp_path):
    import argparse
    path = tmp_path / "other.pth"
    torch.save({"model": {}, "config": argparse.Namespace(a=1)}, path)
    with pytest.raises(Exception, match="Namespace"):
        load_checkpoint_file(path)


def test_upstream_checkpoint_config_is_read(parity_dir):
    ckpt = load_checkpoint_file(parity_dir / "small.pth")
    assert ckpt["epoch"] == 3 and type(ckpt["config"]) is dict
    assert ckpt["config"]["MODEL"]["VIT"]["EMBED_DIM"] == 192
    assert ckpt["model"]["mfvit.frequencies_mask"].dtype == torch.int64


def test_infer_cli_with_released_format_checkpoint(parity_dir, small, tmp_path):
    """`infer` without --cfg builds the model from the CfgNode stored in a spai.pth-format file."""
    from PIL import Image
    from spai.__main__ import main
    from spai.data import EvalTransform
    g = torch.Generator().manual_seed(1)
    img = Image.fromarray((torch.rand(256, 300, 3, generator=g) * 255).byte().numpy())
    (tmp_path / "in").mkdir()
    img.save(tmp_path / "in/x.png")
    main(["infer", "--model", str(parity_dir / "small.pth"), "--input", str(tmp_path / "in"),
          "--output", str(tmp_path / "out"), "--opt", "DATA.NUM_WORKERS", "0"])
    header, row = (tmp_path / "out/in.csv").read_text().splitlines()
    _, model = small
    with torch.no_grad():
        expected = torch.sigmoid(model([EvalTransform(224)(img)])).item()
    assert header == "image,spai" and float(row.split(",")[1]) == pytest.approx(expected, abs=1e-5)

