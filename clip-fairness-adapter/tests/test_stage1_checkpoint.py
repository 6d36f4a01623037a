"""Stage 1 checkpoints in the upstream format (stage1_checkpoint_format.json) load into our Stage 2, keys checked."""
import json

import pytest
import torch
from clip_fairness_adapter.model import Stage2IndependentAdapterModel
from common_utils.train import StateDictMismatchError

DTYPES = {"float16": torch.float16, "float32": torch.float32}


def upstream_checkpoint(fmt: dict, dtype_key: str, prefix: str = "") -> tuple[dict, dict]:
    """A checkpoint with every top-level entry and model key the format lists. CLIP tensors are 1-element stand-ins
    (the loader must ignore them; ViT-L/14 size is not needed for that); adapter/head tensors have their real shapes."""
    g = torch.Generator().manual_seed(0)
    sd, adapter = {}, {}
    for key, spec in fmt["model_state_dict"]["keys"].items():
        shape = spec["shape"] if not key.startswith("clip_model.") else [1]
        t = torch.randn(shape, generator=g).to(DTYPES[spec[dtype_key]])
        sd[prefix + key] = t
        if key.startswith("additive_adapter."):
            adapter[key[len("additive_adapter."):]] = t.float()
    ckpt = {"epoch": 3, "model_state_dict": sd,
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3, "params": list(range(14))}]},
            "best_metrics": {"race_acc": 0.5, "gender_acc": 0.5, "cosine_sim": 0.9, "variance_ratio": float("inf"),
                             "combined_score": float("-inf"), "epoch": 2},
            "config": {"clip_name": "ViT-L/14", "mean": [0.48145466, 0.4578275, 0.40821073]},
            "scheduler_state_dict": {"T_max": 20, "eta_min": 1e-05, "last_epoch": 1}}
    assert list(ckpt) == fmt["top_level_key_order"]
    return ckpt, adapter


@pytest.fixture(scope="module")
def fmt(fixture_dir):
    return json.loads((fixture_dir / "stage1_checkpoint_format.json").read_text())


@pytest.mark.parametrize("dtype_key,prefix", [("dtype_cpu_run", ""), ("dtype_cuda_run", "module.")])
def test_upstream_stage1_checkpoint_loads(fmt, tmp_path, dtype_key, prefix):
    ckpt, adapter = upstream_checkpoint(fmt, dtype_key, prefix)
    path = tmp_path / "checkpoint_best.pth"
    torch.save(ckpt, path)
    model = Stage2IndependentAdapterModel(None, 768, kv="global")
    before = {k: v.clone() for k, v in model.stage1_adapter.state_dict().items()}
    model.load_stage1_checkpoint(path)
    after = model.stage1_adapter.state_dict()
    assert sorted(after) == sorted(adapter) == sorted(fmt["stage2_load_stage1_checkpoint"]["mapping_to_stage2"]
                                                        [k].split("stage1_adapter.")[1]
                                                        for k in fmt["stage2_load_stage1_checkpoint"]["keys_used"])
    for k, v in adapter.items():
        assert torch.equal(after[k], v) and not torch.equal(after[k], before[k])
        assert after[k].dtype == torch.float32
    assert not any(p.requires_grad for p in model.stage1_adapter.parameters())


def test_missing_adapter_key_is_an_error(fmt, tmp_path):
    ckpt, _ = upstream_checkpoint(fmt, "dtype_cpu_run")
    del ckpt["model_state_dict"]["additive_adapter.adapter.3.bias"]
    torch.save(ckpt, tmp_path / "c.pth")
    with pytest.raises(StateDictMismatchError, match=r"missing: \['adapter.3.bias'\]"):
        Stage2IndependentAdapterModel(None, 768, kv="global").load_stage1_checkpoint(tmp_path / "c.pth")


def test_no_adapter_keys_is_an_error(tmp_path):
    torch.save({"model_state_dict": {"clip_model.visual.proj": torch.zeros(2, 2)}}, tmp_path / "c.pth")
    with pytest.raises(KeyError, match="no 'additive_adapter"):
        Stage2IndependentAdapterModel(None, 768, kv="global").load_stage1_checkpoint(tmp_path / "c.pth")


def test_misshaped_adapter_is_an_error(tmp_path):
    adapter = Stage2IndependentAdapterModel(None, 768, stage1_hidden_dim=256, kv="global").stage1_adapter
    sd = {f"additive_adapter.{k}": v for k, v in adapter.state_dict().items()}
    torch.save({"model_state_dict": sd}, tmp_path / "c.pth")
    with pytest.raises(StateDictMismatchError, match="mis-shaped"):
        Stage2IndependentAdapterModel(None, 768, kv="global").load_stage1_checkpoint(tmp_path / "c.pth")
