"""MFM pre-training: the released checkpoint layout, the strict key map into SPAI's ViT, the pretext, the trainer."""
import pytest
import torch
from common_utils.train import StateDictMismatchError
from common_utils.train.testing import FAULT_ENV, metrics_rows, run_forked
from conftest import CONFIGS
from spai.config import get_config
from spai.models import build_cls_model, load_mfm_backbone, load_pretrained
from spai.models.mfm import MFMPretrainModel, frequency_mask, mfm_to_vit_state_dict
from spai.pretrain import write_mfm_checkpoint

BLOCK_KEYS = ["norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.qkv.weight", "attn.proj.weight",
              "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
              "mlp.fc2.bias"]


def _mfm_cfg(opts=()):
    return get_config(CONFIGS / "tiny_mfm.yaml", list(opts))


def test_state_dict_is_the_mfm_repository_layout():
    """Keys of MFM's ViT pre-training model (no mean pooling, decoder depth 0): encoder.* + a 1x1 conv decoder."""
    cfg = _mfm_cfg()
    sd = MFMPretrainModel(cfg).state_dict()
    depth, d, p = cfg.MODEL.VIT.DEPTH, cfg.MODEL.VIT.EMBED_DIM, cfg.MODEL.VIT.PATCH_SIZE
    expected = {"encoder.cls_token", "encoder.pos_embed", "encoder.patch_embed.proj.weight",
                "encoder.patch_embed.proj.bias", "encoder.norm.weight", "encoder.norm.bias", "decoder.0.weight",
                "decoder.0.bias"} | {f"encoder.blocks.{i}.{k}" for i in range(depth) for k in BLOCK_KEYS}
    assert set(sd) == expected
    assert sd["decoder.0.weight"].shape == (p * p * 3, d, 1, 1) and sd["encoder.pos_embed"].shape == (1, 65, d)


def test_mfm_checkpoint_loads_into_the_spai_backbone(tmp_path, caplog):
    torch.manual_seed(0)
    mfm = MFMPretrainModel(_mfm_cfg())
    path = write_mfm_checkpoint(mfm, tmp_path / "mfm_pretrain.pth", 4, _mfm_cfg())
    torch.manual_seed(1)
    model = build_cls_model(get_config(CONFIGS / "tiny.yaml"))
    head_before = model.cls_head.head[0].weight.clone()
    with caplog.at_level("INFO"):
        loaded = load_pretrained(model, path)
    assert loaded.kind == "mfm" and loaded.epoch == 4 and loaded.covers_backbone
    for k, v in model.mfvit.vit.state_dict().items():
        assert torch.equal(v, mfm.state_dict()[f"encoder.{k}"]), k
    assert torch.equal(model.cls_head.head[0].weight, head_before)  # only the ViT comes from the MFM file
    assert "decoder.0.weight" in caplog.text and "encoder.norm.weight" in caplog.text  # dropped, listed


def test_mfm_key_map_is_strict():
    cfg = get_config(CONFIGS / "tiny.yaml")
    sd = MFMPretrainModel(_mfm_cfg()).state_dict()
    vit, dropped = mfm_to_vit_state_dict(sd)
    assert sorted(dropped) == ["decoder.0.bias", "decoder.0.weight", "encoder.norm.bias", "encoder.norm.weight"]
    assert len(vit) == len(sd) - 4
    missing = {k: v for k, v in sd.items() if k != "encoder.blocks.1.attn.q_bias"}
    with pytest.raises(StateDictMismatchError, match=r"blocks\.1\.attn\.q_bias"):
        load_mfm_backbone(build_cls_model(cfg), missing)
    extra = sd | {"encoder.rel_pos_bias.relative_position_bias_table": torch.zeros(3, 3)}
    with pytest.raises(StateDictMismatchError, match="rel_pos_bias"):
        load_mfm_backbone(build_cls_model(cfg), extra)
    with pytest.raises(ValueError, match="not an MFM checkpoint key"):
        mfm_to_vit_state_dict(sd | {"head.weight": torch.zeros(1)})
    wide = get_config(CONFIGS / "tiny.yaml", ["MODEL.VIT.EMBED_DIM", 24, "MODEL.VIT.NUM_HEADS", 2])
    with pytest.raises(StateDictMismatchError, match="mis-shaped"):
        load_mfm_backbone(build_cls_model(wide), sd)


def test_frequency_mask_and_masked_loss():
    mask = frequency_mask(224, 16, 999)
    yy, xx = torch.meshgrid(torch.arange(224), torch.arange(224), indexing="ij")
    assert int(mask.sum()) == int((((xx - 112) ** 2 + (yy - 112) ** 2) < 256).sum())
    assert frequency_mask(224, 16, 40).sum() > mask.sum()  # a band: beyond radius2 is kept
    model = MFMPretrainModel(_mfm_cfg()).eval()
    x = torch.rand(2, 3, 64, 64)
    low = model.corrupt(x, model.mask[None, None])
    spectrum = torch.fft.fftshift(torch.fft.fft2(low), dim=(-2, -1))
    outside = spectrum.abs()[..., model.mask == 0]
    assert outside.max() < 0.5  # low-pass before clamping to [0, 1]: what remains is the clamp's leakage
    with torch.no_grad():
        loss = model(x, torch.tensor([True, False]))
    assert loss.ndim == 0 and loss > 0


def _cli(csv, out, *extra):
    return ["pretrain-mfm", "--cfg", str(CONFIGS / "tiny_mfm.yaml"), "--data-path", str(csv), "--output", str(out),
            "--csv-root-dir", str(csv.parents[1]),
            "TRAIN.EPOCHS=2", "DATA.BATCH_SIZE=4", "DATA.VAL_BATCH_SIZE=4", "MODEL.VIT.PATCH_SIZE=16", *extra]


def test_pretraining_resumes_exactly_and_feeds_train(tiny_data, tmp_path):
    from spai.__main__ import main
    csv = tiny_data / "spai/train.csv"
    assert run_forked(main, _cli(csv, tmp_path / "ref")) == 0
    assert run_forked(main, _cli(csv, tmp_path / "cut"), env={FAULT_ENV: "after_checkpoint:1"}) == -9
    assert run_forked(main, [*_cli(csv, tmp_path / "cut"), "--resume", "auto"]) == 0
    rows = metrics_rows(tmp_path / "cut/metrics.jsonl")
    assert rows == metrics_rows(tmp_path / "ref/metrics.jsonl") and len(rows) == 2
    assert all(r["train_loss"] > 0 and r["val_loss"] > 0 for r in rows)
    ref, cut = (torch.load(d / "last.pth", weights_only=True)["models"]["model"] for d in (tmp_path / "ref",
                                                                                          tmp_path / "cut"))
    assert all(torch.equal(v, cut[k]) for k, v in ref.items())
    # the export trains SPAI on a frozen pre-trained backbone (no ALLOW_RANDOM_FROZEN needed)
    assert run_forked(main, ["train", "--cfg", str(CONFIGS / "tiny.yaml"), "--data-path", str(csv),
                             "--csv-root-dir", str(tiny_data), "--output", str(tmp_path / "spai"),
                             "--pretrained", str(tmp_path / "ref/mfm_pretrain.pth"), "MODEL.FREEZE_BACKBONE=True",
                             "MODEL.VIT.PATCH_SIZE=16", "TRAIN.EPOCHS=1", "DATA.AUGMENTED_VIEWS=1"]) == 0
    spai = torch.load(tmp_path / "spai/last.pth", weights_only=True)["models"]["model"]
    mfm = torch.load(tmp_path / "ref/last.pth", weights_only=True)["models"]["model"]
    assert torch.equal(spai["mfvit.vit.blocks.0.attn.qkv.weight"], mfm["encoder.blocks.0.attn.qkv.weight"])
