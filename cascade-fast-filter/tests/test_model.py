"""Model: one logit, local ImageNet weights with the head dropped, strict reload, FLOPs and time per image."""
import pytest
import timm
import torch
from cascade_fast_filter.stage1.model import build, load_trained_model, measure_gflops, measure_ms_per_image
from common_utils.train import StateDictMismatchError, save_checkpoint
from omegaconf import OmegaConf
from safetensors.torch import save_file


def model_cfg(**kw):
    base = dict(name="mobilenetv4_hybrid_medium", pretrained=False, pretrained_file=None, input_size=256,
                mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], drop_rate=0.0)
    return OmegaConf.create({**base, **kw})


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A random-init 1000-class mobilenetv4_hybrid_medium saved as safetensors (stand-in for ix_e550_r256_in1k)."""
    torch.manual_seed(0)
    ref = timm.create_model("mobilenetv4_hybrid_medium", pretrained=False, num_classes=1000)
    path = tmp_path_factory.mktemp("weights") / "mnv4_hm_in1k.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    return path, ref.state_dict()


def test_pretrained_file_loads_all_but_the_head(imagenet_file):
    path, ref = imagenet_file
    model = build(model_cfg(pretrained=True, pretrained_file=str(path)))
    sd = model.state_dict()
    assert sd["classifier.weight"].shape == (1, 1280)
    assert set(sd) == set(ref)  # same keys, only the head differs in shape
    for k, v in sd.items():
        if not k.startswith("classifier."):
            assert torch.equal(v, ref[k]), k
    assert torch.count_nonzero(sd["classifier.weight"]) == 0
    assert model(torch.randn(2, 3, 256, 256)).shape == (2, 1)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(9.79e6, rel=0.01)  # anchors: ~9.79M


def test_pretrained_file_of_another_architecture_is_rejected(tmp_path):
    other = timm.create_model("mobilenetv4_conv_small_035", pretrained=False, num_classes=1000)
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises((KeyError, RuntimeError)):
        build(model_cfg(name="mobilenetv4_conv_small_050", pretrained=True, pretrained_file=str(path)))


def test_pretrained_without_file_is_an_error():
    with pytest.raises(ValueError, match="pretrained_file"):
        build(model_cfg(pretrained=True))
    with pytest.raises(FileNotFoundError):
        build(model_cfg(pretrained=True, pretrained_file="/nonexistent/w.safetensors"))


def test_flops_at_256_px():
    """FlopCounterMode counts 2.456 GFLOPs at 256 px (multiply-add = 2; convolutions, matmuls and attention, not
    norms or activations); timm's results table lists 1.29 GMACs (2.58 GFLOPs) from a profiler counting more ops."""
    model = build(model_cfg())
    assert measure_gflops(model, 256) == pytest.approx(2.456, abs=0.001)
    assert measure_gflops(model, 128) == pytest.approx(2.456 / 4, rel=0.03)  # convolutions scale with the area


def test_time_per_image_is_measured_at_the_batch_size():
    model = build(model_cfg(name="test_efficientnet", input_size=32))
    timing = measure_ms_per_image(model, 32, batch_size=4, repeats=2, warmup=1)
    assert timing["batch_size"] == 4 and timing["device"] == "cpu" and timing["ms_per_image"] > 0


def test_trained_checkpoint_strict_reload(tmp_path):
    cfg = model_cfg(name="mobilenetv4_conv_small_035", input_size=64)
    model = build(cfg)
    torch.nn.init.normal_(model.classifier.weight)
    path = tmp_path / "best_model.pth"
    save_checkpoint({"model": model.state_dict(), "config": {"model": OmegaConf.to_container(cfg)}}, path)
    loaded, _ = load_trained_model(path)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(loaded(x), model.eval()(x))
    broken = dict(model.state_dict())
    broken.pop("classifier.weight")
    save_checkpoint({"model": broken, "config": {"model": OmegaConf.to_container(cfg)}}, tmp_path / "broken.pth")
    with pytest.raises(StateDictMismatchError, match="classifier.weight"):
        load_trained_model(tmp_path / "broken.pth")
    with pytest.raises(FileNotFoundError, match="train first"):
        load_trained_model(tmp_path / "absent.pth")
