"""Parity with the design authors' code (shared fixture) in the design's mode."""
import json

import pytest
import torch
import torch.nn.functional as F
from clip_fairness_adapter.losses import (
    BatchedSinkhorn,
    DynamicFairnessLossWeighting,
    FairnessLoss,
    FixedLossWeighting,
    PairwiseFairnessLoss,
    Stage2FairnessLoss,
)
from clip_fairness_adapter.model import Stage2IndependentAdapterModel
from safetensors.torch import load_file

FORWARD = {  # our output key -> fixture tensor
    "clip_features": "clip_feat", "stage1_add": "stage1_add", "stage1_features": "stage1_features",
    "stage2_add": "stage2_add", "stage2_features": "stage2_features", "fusion_attn_out": "fusion_attn_out",
    "fusion_norm1_out": "fusion_norm1_out", "fusion_ffn_out": "fusion_ffn_out", "fusion_norm2_out":
    "fusion_norm2_out", "fusion_gate_hidden_pre_relu": "fusion_gate_hidden_pre_relu", "gate": "gate",
    "fused_features": "fused_features", "fused_features_norm": "fused_features_norm", "cls": "cls_logits",
    "prob": "prob",
}


@pytest.fixture(scope="module")
def io(fixture_dir):
    return load_file(fixture_dir / "stage2_io.safetensors")


@pytest.fixture(scope="module")
def fcfg(fixture_dir):
    return json.loads((fixture_dir / "stage2_config.json").read_text())


@pytest.fixture(scope="module")
def design_model(fixture_dir, fcfg):
    m = fcfg["model"]
    model = Stage2IndependentAdapterModel(None, m["feature_dim"], m["stage1_hidden_dim"], m["stage2_hidden_dim"],
                                          tuple(m["classifier_hidden_dims"]), m["num_classes"], m["dropout"],
                                          m["fusion_num_heads"], gate_bias=1.0, kv="global", mix="design")
    state = torch.load(fixture_dir / "stage2_heads.pth", map_location="cpu", weights_only=True)
    model.load_heads_state_dict(state, "stage2_heads.pth")
    return model.eval()


def sinkhorn(fcfg):
    s = fcfg["losses"]["stage2_fairness"]
    return BatchedSinkhorn(s["sinkhorn_blur"], s["sinkhorn_p"], s["scaling"], diameter=None)


def test_forward_matches_upstream(design_model, io):
    with torch.no_grad():
        out = design_model({"clip_feat": io["input_clip_feat_raw"]})
    for ours, ref in FORWARD.items():
        torch.testing.assert_close(out[ours], io[ref], rtol=1e-5, atol=1e-5, msg=lambda m, k=ours: f"{k}: {m}")
    assert torch.equal(out["attn_weights"], io["attn_weights"])
    assert torch.equal(out["feat"], out["fused_features_norm"])


def test_classification_loss_matches(design_model, io):
    with torch.no_grad():
        logits = design_model({"clip_feat": io["input_clip_feat_raw"]})["cls"]
    torch.testing.assert_close(F.cross_entropy(logits, io["input_labels"]), io["loss_cls"], rtol=0, atol=1e-6)


def test_stage2_fairness_loss_matches(io, fcfg):
    s = fcfg["losses"]["stage2_fairness"]
    loss_fn = Stage2FairnessLoss(sinkhorn(fcfg), s["num_subgroups"], s["min_samples_per_subgroup"], truncate=True)
    loss, info = loss_fn(io["fused_features_norm"], io["input_labels"], io["input_subgroups"])
    torch.testing.assert_close(loss, io["loss_stage2_fair"], rtol=0, atol=1e-6)
    for name in ("real", "fake"):
        assert info[f"{name}_pairs"] == int(io[f"stage2_fair_{name}_pairs"])
        torch.testing.assert_close(info[name], io[f"stage2_fair_{name}_loss"], rtol=0, atol=1e-6)
    pair_keys = [k for k in info if isinstance(k, tuple)]
    expected = sorted(k for k in io if k.startswith("stage2_fair_pair_"))
    assert sorted(f"stage2_fair_pair_{c}_sg{i}_sg{j}" for c, i, j in pair_keys) == expected
    for c, i, j in pair_keys:
        torch.testing.assert_close(info[(c, i, j)], io[f"stage2_fair_pair_{c}_sg{i}_sg{j}"], rtol=0, atol=1e-6)


def test_stage1_pairwise_loss_matches(io, fcfg):
    loss, terms = PairwiseFairnessLoss(sinkhorn(fcfg), truncate=True)(io["stage1_features"], io["input_subgroups"])
    torch.testing.assert_close(loss, io["loss_stage1_pairwise"], rtol=0, atol=1e-6)
    assert sorted(f"stage1_pairwise_pair_sg{i}_sg{j}" for i, j in terms) == \
        sorted(k for k in io if k.startswith("stage1_pairwise_pair_"))
    for (i, j), v in terms.items():
        torch.testing.assert_close(v, io[f"stage1_pairwise_pair_sg{i}_sg{j}"], rtol=0, atol=1e-6)


def test_stage1_subgroup_vs_batch_loss_matches(io, fcfg):
    seed_draws = fcfg["losses"]["stage1_fairness"]["subgroups_drawing_randperm"]
    torch.manual_seed(1000)  # the fixture's draws: one randperm(B) per subgroup, ascending id
    for k in seed_draws:
        assert torch.equal(torch.randperm(len(io["input_labels"])), io[f"stage1_fairness_randperm_sg{k}"])
    torch.manual_seed(1000)
    loss, terms = FairnessLoss(sinkhorn(fcfg), reference="subsample")(io["stage1_features"], io["input_subgroups"])
    torch.testing.assert_close(loss, io["loss_stage1_fairness"], rtol=0, atol=1e-6)
    assert sorted(terms) == seed_draws
    for k, v in terms.items():
        torch.testing.assert_close(v, io[f"stage1_fairness_sg{k}"], rtol=0, atol=1e-6)


def test_dynamic_weighting_matches_upstream_form(io, fcfg):
    d = fcfg["losses"]["dynamic_weighting"]
    w = DynamicFairnessLossWeighting(d["init_log_var_cls"], d["init_log_var_fair"], form="upstream")
    torch.testing.assert_close(w.log_var_cls.detach(), io["dyn_log_var_cls"])
    torch.testing.assert_close(w.log_var_fair.detach(), io["dyn_log_var_fair"])
    for tag, lc, lf in (("pipeline", io["loss_cls"], io["loss_stage2_fair"]),
                        ("given", io["dyn_given_loss_cls"], io["dyn_given_loss_fair"])):
        total, lam, info = w(lc, lf)
        torch.testing.assert_close(total, io[f"dyn_{tag}_total"], rtol=0, atol=1e-6)
        torch.testing.assert_close(lam, io[f"dyn_{tag}_lambda_fair"], rtol=0, atol=1e-6)
        for k in ("precision_cls", "precision_fair", "weighted_cls", "weighted_fair"):
            torch.testing.assert_close(info[k], io[f"dyn_{tag}_{k}"], rtol=0, atol=1e-6)


def test_fixed_weighting_matches(io, fcfg):
    f = fcfg["losses"]["fixed_weighting"]
    total, rel, _ = FixedLossWeighting(f["lambda_cls"], f["lambda_fair"])(io["loss_cls"], io["loss_stage2_fair"])
    torch.testing.assert_close(total, io["fixed_pipeline_total"], rtol=0, atol=1e-6)
    assert abs(float(rel) - float(io["fixed_pipeline_relative_lambda_fair"])) < 1e-6
