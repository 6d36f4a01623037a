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


def test_cpu_chunk_bound_splits_extraction_without_changing_outputs():
    """MODEL.FEATURE_EXTRACTION_BATCH_CPU bounds the chunk on a CPU; logits and aux equal the one-chunk call."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 200, 200, generator=g), torch.rand(3, 150, 260, generator=g)]  # 9 + 8 grid patches
    out, seen = {}, {}
    for bound in (0, 4):
        torch.manual_seed(0)
        m = build_cls_model(get_config(CONFIGS / "tiny.yaml", ["MODEL.FEATURE_EXTRACTION_BATCH_CPU", bound])).eval()
        seen[bound] = []
        m.mfvit.register_forward_pre_hook(lambda _, args, b=bound: seen[b].append(args[0].shape[0]))
        with torch.no_grad():
            out[bound] = m(images, 64, return_aux=True)
    assert seen == {0: [17], 4: [4, 4, 4, 4, 1]}
    torch.testing.assert_close(out[4][0], out[0][0], atol=1e-6, rtol=0)
    for k, parts in out[0][1].items():
        for c, t in parts.items():
            torch.testing.assert_close(out[4][1][k][c], t, atol=1e-6, rtol=0)


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
    views = TrainTransform(cfg)(load_image(rows[0].image))
    assert views.shape == (3, 3, 64, 64) and views.dtype == torch.float32 and 0 <= views.min() <= views.max() <= 1

    class Ctx:
        distributed, device, rank, world_size = False, torch.device("cpu"), 0, 1
    loader = build_loader(rows, EvalTransform(64), 4, Ctx, cfg, train=False, collate=collate_list)
    images, labels, idx = next(iter(loader))
    assert isinstance(images, list) and len({im.shape for im in images}) > 1 and idx.tolist() == [0, 1, 2, 3]


def test_training_views_are_whole_patches_without_seams():
    """Each augmented view is exactly one patch, whatever PATCH_STRIDE (the design's 112 of 224 made patches that
    straddled two independently augmented views)."""
    cfg = get_config(CONFIGS / "tiny.yaml", ["MODEL.PATCH_VIT.PATCH_STRIDE", 32])
    torch.manual_seed(0)
    model = build_cls_model(cfg).eval()
    seen = []
    model.mfvit.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    views = torch.rand(2, 4, 3, 64, 64)
    with torch.no_grad():
        logits = model(views)
    assert logits.shape == (2, 1)
    torch.testing.assert_close(seen[0], views.flatten(0, 1), atol=0, rtol=0)  # 8 patches = the 8 views
    with pytest.raises(ValueError, match="one 64 px patch"):
        model(torch.rand(2, 4, 3, 64, 128))


def test_augmentation_order_is_upstreams():
    assert TrainTransform.STEPS == ("crop", "hflip", "vflip", "rotate", "blur", "noise", "color_jitter", "jpeg")


def test_jpeg_is_applied_after_blur_and_noise():
    """Blur, noise and JPEG always on, on a flat grey image: strong JPEG after the noise removes most of it (noise
    added after the JPEG step would stay at its full standard deviation, ~7 levels)."""
    cfg = get_config(CONFIGS / "tiny.yaml", ["AUG.GAUSSIAN_BLUR_PROB", 1.0, "AUG.GAUSSIAN_NOISE_PROB", 1.0,
                                             "AUG.GAUSSIAN_NOISE_VAR", [50.0, 50.0], "AUG.JPEG_COMPRESSION_PROB", 1.0,
                                             "AUG.JPEG_MIN_QUALITY", 20, "AUG.JPEG_MAX_QUALITY", 20])
    torch.manual_seed(0)
    grey = torch.full((3, 64, 64), 128, dtype=torch.uint8)
    t = TrainTransform(cfg)
    out = t.view(grey) * 255
    noise_only = t.step("noise", grey).float()
    assert noise_only.std() > 6.5 and out.std() < 0.5 * noise_only.std()


def test_rotation_crops_the_border_instead_of_black_corners():
    from spai.data.data_finetune import rotate_crop_border
    white = torch.full((3, 64, 64), 255, dtype=torch.uint8)
    for angle in (-89.0, -30.0, 10.0, 45.0, 90.0):
        out = rotate_crop_border(white, angle)
        assert out.shape == (3, 64, 64) and int(out.min()) >= 250, angle  # RandomRotation left ~11 % black
    cfg = get_config(CONFIGS / "tiny.yaml", ["AUG.ROTATION_PROB", 1.0, "AUG.ROTATION_MODE", "right_angle"])
    x = torch.arange(3 * 64 * 64, dtype=torch.int64).reshape(3, 64, 64).to(torch.uint8)
    torch.manual_seed(0)
    rotated = TrainTransform(cfg).step("rotate", x)
    assert any(torch.equal(rotated, torch.rot90(x, k, dims=(-2, -1))) for k in (1, 2, 3))


def test_blur_kernel_draws_upstream_range():
    from spai.data.data_finetune import blur_kernel_size
    torch.manual_seed(0)
    sizes = {blur_kernel_size(3, 9) for _ in range(200)}
    assert sizes == {3, 5, 7, 9}  # was fixed at 9


def test_bad_csv_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,class,split\nx.png,7,train\n")
    with pytest.raises(ValueError) as e:
        read_rows(bad, tmp_path, None)
    assert "bad.csv" in str(e.value)
