"""Our DETR against outputs of the upstream DETR code (shared/fixtures/parity/detr)."""
import json

import pytest
import torch
from common_utils.train import check_state_dict
from conftest import fixture_dir
from faap_detr.losses.criterion import SetCriterion
from faap_detr.main import load_cfg
from faap_detr.models.detr import build, load_detr_checkpoint, map_official_keys
from faap_detr.models.matcher import HungarianMatcher
from safetensors.torch import load_file

SMALL = dict(backbone="resnet18", hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2, dim_feedforward=128,
             dropout=0.1, num_queries=10, num_classes=91)
R50 = dict(SMALL, backbone="resnet50", hidden_dim=256, nheads=8, enc_layers=6, dec_layers=6, dim_feedforward=2048,
           num_queries=100)


def build_detr(detr):
    """The model of `build(cfg)` for these `detr` keys over configs/default.yaml."""
    return build(load_cfg(None, [f"detr.{k}={v}" for k, v in detr.items()]))[0]


@pytest.fixture(scope="module")
def small():
    d = fixture_dir("detr")
    io = load_file(d / "small_r18_io.safetensors")
    model = load_detr_checkpoint(build_detr(SMALL), d / "small_r18.pth").eval()
    with torch.no_grad():
        out = model(io["images"], io["mask"].bool())
    targets = [{"labels": io[f"t{i}_labels"], "boxes": io[f"t{i}_boxes"]} for i in range(2)]
    return model, io, out, targets


def test_outputs_and_hidden_states_match(small):
    model, io, out, _ = small
    for ours, ref in [(out["pred_logits"], "pred_logits"), (out["pred_boxes"], "pred_boxes"), (out["hs"], "hs"),
                      (out["aux_outputs"][0]["pred_logits"], "aux_0_pred_logits"),
                      (out["aux_outputs"][0]["pred_boxes"], "aux_0_pred_boxes")]:
        assert ours.shape == io[ref].shape
        assert (ours - io[ref]).abs().max() < 1e-4, ref
    assert out["hs"].shape == (2, 2, 10, 64)  # every decoder layer


def test_intermediates_match(small):
    model, io, _, _ = small
    with torch.no_grad():
        feats, fmask, pos = model.backbone(io["images"], io["mask"].bool())
        hs, memory = model.transformer(model.input_proj(feats), fmask, model.query_embed.weight, pos)
    ref = io["backbone_features"]
    assert (feats - ref).abs().max() / ref.abs().max() < 1e-5
    assert torch.equal(fmask, io["backbone_mask"].bool())
    assert (pos - io["pos_embed"]).abs().max() < 1e-5
    assert (memory - io["memory"]).abs().max() < 1e-4


def test_matcher_and_losses_match(small):
    _, io, out, targets = small
    matcher = HungarianMatcher(1, 5, 2)
    crit = SetCriterion(91, matcher, {"loss_ce": 1, "loss_bbox": 5, "loss_giou": 2}, eos_coef=0.1)
    losses, indices = crit(out, targets)
    for i, (src, tgt) in enumerate(indices):
        assert torch.equal(src, io[f"match{i}_src"]) and torch.equal(tgt, io[f"match{i}_tgt"])
    for i, (src, tgt) in enumerate(matcher(out["aux_outputs"][0], targets)):
        assert torch.equal(src, io[f"aux_0_match{i}_src"]) and torch.equal(tgt, io[f"aux_0_match{i}_tgt"])
    for k in ("loss_ce", "loss_bbox", "loss_giou", "loss_ce_0", "loss_bbox_0", "loss_giou_0"):
        assert abs(losses[k].item() - io[f"loss__{k}"].item()) < 1e-4, k
    for k in ("class_error", "cardinality_error", "cardinality_error_0"):
        assert losses[k].item() == io[f"loss__{k}"].item(), k
    assert abs(crit.weighted_total(losses).item() - io["loss__total_weighted"].item()) < 1e-4


def test_every_official_r50_key_maps_to_a_tensor_of_the_right_shape():
    keys = json.loads((fixture_dir("detr") / "official_r50_keys.json").read_text())
    assert len(keys) == 458
    with torch.device("meta"):
        model = build_detr(R50)
        state = {k: torch.empty(v["shape"]) for k, v in keys.items()}
    mapped = map_official_keys(state)
    assert len(mapped) == len(keys)  # no tensor dropped by the map
    check_state_dict(model, mapped, "official_r50_keys.json")  # raises on any missing/unexpected/mis-shaped
    assert list(mapped) == list(model.state_dict())  # same order as upstream's state dict


def test_bad_checkpoint_names_the_offending_keys(tmp_path):
    sd = torch.load(fixture_dir("detr") / "small_r18.pth", weights_only=True)["model"]
    sd = dict(sd)
    sd.pop("class_embed.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["query_embed.weight"] = torch.zeros(5, 64)
    torch.save({"model": sd}, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as e:
        load_detr_checkpoint(build_detr(SMALL), tmp_path / "bad.pth")
    msg = str(e.value)
    assert "class_embed.bias" in msg and "extra.weight" in msg and "query_embed.weight" in msg and "bad.pth" in msg
    torch.save(sd, tmp_path / "flat.pth")
    with pytest.raises(ValueError, match="'model'"):
        load_detr_checkpoint(build_detr(SMALL), tmp_path / "flat.pth")
