"""common_utils.clip_weights: OpenAI CLIP TorchScript archives and open_clip files, read without running code."""
import pytest
import torch

open_clip = pytest.importorskip("open_clip")
from common_utils.clip_weights import load_open_clip  # noqa: E402
from common_utils.train import StateDictMismatchError  # noqa: E402

VISION = dict(image_size=64, layers=2, width=64, patch_size=16, head_width=64)
TEXT = dict(context_length=8, vocab_size=64, width=64, heads=1, layers=1)


@pytest.fixture(scope="module")
def src():
    torch.manual_seed(0)
    model = open_clip.CLIP(32, VISION, TEXT, quick_gelu=True).eval()
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})  # OpenAI ships fp16
    return model


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")  # tracing makes the fixture
def test_openai_torchscript_archive(src, tmp_path, monkeypatch):
    """A traced CLIP (the OpenAI ``ViT-L-14.pt`` layout) rebuilds the same model; torch.jit.load is never called."""
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.trace(src, (torch.randn(1, 3, 64, 64), torch.randint(0, 64, (1, 8))), strict=False,
                    check_trace=False).save(path)
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load must not be called"))
    model = load_open_clip("ViT-L-14-quickgelu", path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.visual(x), src.visual(x), rtol=1e-4, atol=1e-5)


def test_open_clip_file_is_loaded_strictly(src, tmp_path, monkeypatch):
    path = tmp_path / "open_clip_model.bin"
    torch.save(src.state_dict(), path)
    monkeypatch.setattr(open_clip, "create_model", lambda name, pretrained=None: open_clip.CLIP(32, VISION, TEXT,
                                                                                                quick_gelu=True))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_open_clip("tiny", path).visual(x), src.visual(x))
    state = src.state_dict()
    state.pop("visual.proj")
    torch.save(state, path)
    with pytest.raises(StateDictMismatchError, match=r"missing: \['visual.proj'\]"):
        load_open_clip("tiny", path)
