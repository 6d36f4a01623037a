"""Mixed image sizes, patching, transforms."""
import pytest
import torch
from conftest import CONFIGS
from spai.config import get_config
from spai.data import EvalTransform, TrainTransform, build_loader, collate_list, read_rows
from spai.models import build_cls_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_cls_model(get_config(CONFIGS / "tiny.yaml")).eval()


def test_batch_mixing_image_sizes_matches_single_calls(model):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 64, generator=g), torch.rand(3, 150, 200, generator=g),
              torch.rand(3, 130, 70, generator=g)]
    with torch.no_grad():
        batch = model(images, 3)  # chunks of 3 patches across image boundaries
        single = torch.cat([model([im]) for im in images])
    assert batch.shape == (3, 1)
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=0)


def test_patching_grid_and_five_crop(model):
    x = torch.arange(3 * 130 * 200, dtype=torch.float32).reshape(3, 130, 200)
    grid = model.patchify(x)  # 2 x 3 grid of 64 at stride 64 = 6 >= 4 patches, remainder dropped
    assert grid.shape == (6, 3, 64, 64)
    torch.testing.assert_close(grid[1], x[:, :64, 64:128])
    torch.testing.assert_close(grid[3], x[:, 64:128, :64])
    crops = model.patchify(x[:, :100, :120])  # 1 grid patch < MINIMUM_PATCHES: five-crop
    assert crops.shape == (5, 3, 64, 64)
    torch.testing.assert_close(crops[3], x[:, 36:100, 56:120])
    with pytest.raises(ValueError, match="smaller than the 64 px patch"):
        model.patchify(x[:, :50, :])


def test_test_transform_resize_longest_side_and_pad():
    from PIL import Image
    img = Image.new("RGB", (300, 120))
    assert EvalTransform(64, resize_to=150)(img).shape == (3, 64, 150)  # 150 x 60 then padded to 64 rows
    assert EvalTransform(64)(Image.new("RGB", (40, 30))).shape == (3, 64, 64)


def test_train_transform_views_and_loader(tiny_data):
    cfg = get_config(CONFIGS / "tiny.yaml", ["DATA.AUGMENTED_VIEWS", 3])
    rows = read_rows(tiny_data / "spai/train.csv", tiny_data, "train")
    assert len(rows) == 24
    from common_utils.data import load_image
    assert TrainTransform(cfg)(load_image(rows[0].image)).shape == (3, 64, 192)

    class Ctx:
        distributed, device, rank, world_size = False, torch.device("cpu"), 0, 1
    loader = build_loader(rows, EvalTransform(64), 4, Ctx, cfg, train=False, collate=collate_list)
    images, labels, idx = next(iter(loader))
    assert isinstance(images, list) and len({im.shape for im in images}) > 1 and idx.tolist() == [0, 1, 2, 3]


def test_bad_csv_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,class,split\nx.png,7,train\n")
    with pytest.raises(ValueError) as e:
        read_rows(bad, tmp_path, None)
    assert "bad.csv" in str(e.value)
