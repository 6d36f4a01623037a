"""Parity with tcm_add + fairseq (shared fixture) and the checkpoint key map."""
import json
import logging

import pytest
import torch
from audio_xai.model.conformertcm import TCMDetector, build_detector, load_tcm_checkpoint, tcm_state_dict
from audio_xai.model.ssl_frontend import (
    XLSR_300M,
    build_wav2vec2_config,
    fairseq_to_hf_key,
    hf_to_fairseq_key,
    load_pretrained_ssl,
)
from common_utils.train import StateDictMismatchError
from conftest import shared_dir
from safetensors.torch import load_file, save_file

FIX = shared_dir() / "fixtures" / "parity" / "tcm_add"
pytestmark = pytest.mark.skipif(not FIX.is_dir(), reason=f"shared parity fixtures not found at {FIX} (set SHARED_DIR)")
HF_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim", "conv_kernel",
           "conv_stride", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups"]


def small_model() -> TCMDetector:
    conf = json.loads((FIX / "small_config.json").read_text())
    hf, tcm = conf["hf_wav2vec2_equivalent_config"], conf["tcm_add_model"]
    torch.manual_seed(123)  # a different init: every value must come from the checkpoint
    return TCMDetector(build_wav2vec2_config(**{k: hf[k] for k in HF_KEYS}), tcm["emb_size"], tcm["heads"],
                       tcm["kernel_size"], tcm["num_encoders"])


def test_outputs_match_upstream(caplog):
    model = small_model()
    with caplog.at_level(logging.INFO):
        load_tcm_checkpoint(model, FIX / "small_model.pth")
    assert "dropped 8 wav2vec2 pre-training tensors" in caplog.text
    model.eval()
    ref = load_file(FIX / "small_io.safetensors")
    with torch.no_grad():
        ssl = model.ssl_model(ref["wave"])
        head_in = model.head_input(ssl)
        logits, attns = model.conformer(head_in)
        logits_full, _ = model(ref["wave"])
    diffs = {"ssl_feat": (ssl - ref["ssl_feat"]).abs().max(), "logits": (logits - ref["logits"]).abs().max(),
             "conformer_in": (head_in - ref["conformer_in"]).abs().max()}
    diffs.update({f"attn_{i}": (a - ref[f"attn_{i}"]).abs().max() for i, a in enumerate(attns)})
    print({k: float(v) for k, v in diffs.items()})
    for name, d in diffs.items():
        assert d < 1e-4, (name, float(d))
    assert torch.equal(logits, logits_full)
    assert len(attns) == 2 and attns[0].shape == ref["attn_0"].shape


def test_save_roundtrip_reproduces_checkpoint():
    model = small_model()
    load_tcm_checkpoint(model, FIX / "small_model.pth")
    ref = torch.load(FIX / "small_model.pth", weights_only=True)
    ours = tcm_state_dict(model)
    pretraining = {k for k in ref if fairseq_to_hf_key(k.removeprefix("ssl_model.model.")) is None
                   and k.startswith("ssl_model.model.")}
    assert set(ours) == set(ref) - pretraining and len(pretraining) == 8
    assert all(torch.equal(ours[k], ref[k]) for k in ours)


def test_full_xlsr_layout_is_covered():
    """The released avg_5_best.pth layout (588 tensors): every tensor maps onto our paper-scale model with its shape."""
    full = json.loads((FIX / "full_keys.json").read_text())
    entries = full.get("tensors") or full.get("keys")
    shapes = {e["name"]: tuple(e["shape"]) for e in entries}
    cfg = type("C", (), {})()
    cfg.ssl, cfg.emb_size, cfg.heads, cfg.kernel_size, cfg.num_encoders = dict(XLSR_300M), 144, 4, 31, 4
    with torch.device("meta"):
        model = build_detector(cfg)
    ours = {k: tuple(v.shape) for k, v in tcm_state_dict(model).items()}
    dropped = {k for k in shapes if k.startswith("ssl_model.model.")
               and fairseq_to_hf_key(k.removeprefix("ssl_model.model.")) is None}
    assert dropped == {k for k in shapes if k.startswith("ssl_model.model.")
                       and k.split(".")[2] in ("mask_emb", "quantizer", "project_q", "final_proj")}
    assert set(ours) == set(shapes) - dropped
    assert all(ours[k] == shapes[k] for k in ours)


def test_bad_checkpoints_name_the_keys(tmp_path):
    ref = torch.load(FIX / "small_model.pth", weights_only=True)
    missing = dict(ref)
    missing.pop("conformer.fc5.bias")
    with pytest.raises(StateDictMismatchError, match=r"missing: \['conformer.fc5.bias'\]"):
        load_tcm_checkpoint(small_model(), missing)
    shaped = dict(ref, **{"LL.weight": torch.zeros(3, 3)})
    with pytest.raises(StateDictMismatchError, match=r"mis-shaped: \['LL.weight"):
        load_tcm_checkpoint(small_model(), shaped)
    extra = dict(ref, **{"ssl_model.model.encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="encoder.extra.weight"):
        load_tcm_checkpoint(small_model(), extra)
    unexpected = dict(ref, **{"head.weight": torch.zeros(1)})
    with pytest.raises(StateDictMismatchError, match=r"unexpected: \['head.weight'\]"):
        load_tcm_checkpoint(small_model(), unexpected)



def test_pretrained_ssl_init_from_hf_and_fairseq_files(tmp_path):
    """Stage 1 initialisation: HF-format (prefixed, legacy weight-norm names, pre-training heads) and fairseq files."""
    ref = small_model()
    load_tcm_checkpoint(ref, FIX / "small_model.pth")
    hf = {"wav2vec2." + k.replace("parametrizations.weight.original0", "weight_g")
          .replace("parametrizations.weight.original1", "weight_v"): v.contiguous()
          for k, v in ref.ssl_model.model.state_dict().items()}
    hf["quantizer.codevectors"] = torch.zeros(1, 16, 16)
    save_file(hf, tmp_path / "model.safetensors")
    fs = {hf_to_fairseq_key(k): v for k, v in ref.ssl_model.model.state_dict().items()}
    fs["mask_emb"] = torch.zeros(64)
    torch.save(fs, tmp_path / "fairseq.pt")
    for path, dropped in ((tmp_path / "model.safetensors", ["quantizer.codevectors"]),
                          (tmp_path / "fairseq.pt", ["mask_emb"])):
        model = small_model()
        assert load_pretrained_ssl(model.ssl_model, path) == dropped
        own, want = model.ssl_model.model.state_dict(), ref.ssl_model.model.state_dict()
        assert all(torch.equal(own[k], want[k]) for k in want)
    del fs["encoder.layer_norm.bias"]
    torch.save(fs, tmp_path / "broken.pt")
    with pytest.raises(StateDictMismatchError, match="encoder.layer_norm.bias"):
        load_pretrained_ssl(small_model().ssl_model, tmp_path / "broken.pt")
