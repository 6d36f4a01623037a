"""Manifest rows and transforms: bad rows are named, augmentation follows the config."""
import pytest
import torch
from cascade_fast_filter.config import get_config
from cascade_fast_filter.stage1.data import ManifestDataset, build_transforms, has_videos, read_split
from common_utils.data import DataFormatError
from common_utils.train import ConfigError
from conftest import tiny_cfg
from PIL import Image
from torchvision import transforms


def write_fixture(root, rows, split="train", header="image_path,label,dataset,split"):
    """PNG files + a manifest CSV `manifests/<split>_manifest.csv` with the given data rows."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (80, 100), (120, 30, 200)).save(root / "img" / name)
    (root / "manifests").mkdir(exist_ok=True)
    (root / "manifests" / f"{split}_manifest.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows))


def test_good_manifest_loads(tmp_path):
    write_fixture(tmp_path, ["img/a.png,0,ff,train", "img/b.png,1,ff,train"])
    rows = read_split(tiny_cfg(tmp_path, tmp_path / "run"), "train")
    assert [r.label for r in rows] == [0, 1] and rows[0].image_path == tmp_path / "img" / "a.png"
    x, y, i = ManifestDataset(rows, build_transforms(tiny_cfg(tmp_path, tmp_path / "run"), train=True))[1]
    assert x.shape == (3, 96, 96) and y.item() == 1.0 and i == 1
    # without a video column every frame is its own video
    assert rows[0].video == str(rows[0].image_path) and rows[0].method == "ff" and not has_videos(rows)


def test_video_and_method_columns(tmp_path):
    header = "image_path,label,dataset,split,video,method"
    write_fixture(tmp_path, ["img/a.png,1,FF++,train,FF++/Deepfakes/c23/000_001,Deepfakes",
                             "img/b.png,1,FF++,train,FF++/Deepfakes/c23/000_001,Deepfakes"], header=header)
    rows = read_split(tiny_cfg(tmp_path, tmp_path / "run"), "train")
    assert [r.video for r in rows] == ["FF++/Deepfakes/c23/000_001"] * 2 and rows[1].method == "Deepfakes"
    assert has_videos(rows)
    write_fixture(tmp_path, ["img/a.png,1,FF++,train,v1,Deepfakes", "img/b.png,1,FF++,train,,Deepfakes"],
                  header=header)
    with pytest.raises(DataFormatError, match=r"train_manifest.csv:3.*video"):
        read_split(tiny_cfg(tmp_path, tmp_path / "run"), "train")


@pytest.mark.parametrize("bad_row, message", [
    ("img/missing.png,1,ff,train", "missing.png"),
    ("img/b.png,2,ff,train", "label"),
    ("img/b.png,1,ff,holdout", "split"),
])
def test_bad_rows_are_named(tmp_path, bad_row, message):
    write_fixture(tmp_path, ["img/a.png,0,ff,train", bad_row])
    with pytest.raises(DataFormatError, match=rf"train_manifest.csv:3.*{message}|{message}.*train_manifest.csv:3"):
        read_split(tiny_cfg(tmp_path, tmp_path / "run"), "train")


def test_row_of_another_split_is_named(tmp_path):
    write_fixture(tmp_path, ["img/a.png,0,ff,val", "img/b.png,1,ff,test"], split="val")
    with pytest.raises(DataFormatError, match=r"val_manifest.csv:3.*'test'"):
        read_split(tiny_cfg(tmp_path, tmp_path / "run"), "val")


def _blur(cfg):
    t = build_transforms(cfg, train=True).transforms
    return next(op for op in t if isinstance(op, transforms.RandomApply))


def test_blur_is_random_applied_with_configured_probability(tmp_path):
    default = _blur(tiny_cfg(tmp_path, tmp_path, "augment.blur_prob=0.5"))
    assert default.p == 0.5 and isinstance(default.transforms[0], transforms.GaussianBlur)
    design = tiny_cfg(tmp_path, tmp_path, "augment.blur_prob=1.0", "data.preprocess=resize")
    assert _blur(design).p == 1.0
    # the design's form blurs every image: two training transforms of the same image differ from no-blur
    img = Image.effect_noise((64, 64), 60).convert("RGB")
    sharp = build_transforms(tiny_cfg(tmp_path, tmp_path, "augment.blur_prob=0.0", "augment.hflip=0.0",
                                      "augment.color_jitter=[0,0,0,0]", "data.preprocess=resize"), train=True)(img)
    cfg = tiny_cfg(tmp_path, tmp_path, "augment.blur_prob=1.0", "augment.hflip=0.0", "augment.color_jitter=[0,0,0,0]",
                   "data.preprocess=resize", "augment.blur_sigma=[1.5,2.0]")
    blurred = build_transforms(cfg, train=True)(img)
    assert blurred.std() < sharp.std() * 0.9


def test_eval_transform_resize_and_crop_modes(tmp_path):
    img = Image.new("RGB", (50, 300), (10, 20, 30))
    for mode in ("resize", "crop"):
        x = build_transforms(tiny_cfg(tmp_path, tmp_path, f"data.preprocess={mode}"), train=False)(img)
        assert x.shape == (3, 96, 96) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="preprocess"):
        build_transforms(tiny_cfg(tmp_path, tmp_path, "data.preprocess=warp"), train=False)


def test_infer_inputs_folder_and_csv(tmp_path):
    from cascade_fast_filter.infer import list_images
    write_fixture(tmp_path, [])
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    assert [i.image_path.name for i in list_images(tmp_path / "img", tmp_path)] == ["a.png", "b.png"]
    listing = tmp_path / "list.csv"
    listing.write_text("image_path\nimg/a.png\nimg/gone.png\n")
    with pytest.raises(DataFormatError, match=r"list.csv:3.*gone.png"):
        list_images(listing, tmp_path)


def test_switched_off_augmentations_are_left_out_and_cache_keeps_decoded_images(tmp_path):
    off = [type(op).__name__ for op in build_transforms(tiny_cfg(tmp_path, tmp_path), train=True).transforms]
    assert off == ["RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    on = build_transforms(tiny_cfg(tmp_path, tmp_path, "augment.color_jitter=[0.2,0,0,0]", "augment.affine_degrees=5",
                                   "augment.blur_prob=0.5"), train=True).transforms
    assert {"ColorJitter", "RandomAffine", "RandomApply"} <= {type(op).__name__ for op in on}
    write_fixture(tmp_path, ["img/a.png,0,ff,train", "img/b.png,1,ff,train"])
    rows = read_split(tiny_cfg(tmp_path, tmp_path / "run"), "train")
    ds = ManifestDataset(rows, build_transforms(tiny_cfg(tmp_path, tmp_path), train=False), cache=True)
    first = ds[0][0]
    (tmp_path / "img" / "a.png").unlink()  # served from memory now
    assert torch.equal(ds[0][0], first) and len(ds.cache) == 1


def test_nullable_keys_are_declared_and_other_keys_refuse_null():
    cfg = get_config(None, ["model.pretrained_file=null", "cascade.select_split=null", "model.test_size=128"])
    assert cfg.model.pretrained_file is None and cfg.cascade.select_split is None and cfg.model.test_size == 128
    for key in ("train.epochs", "calibration.report_split", "evaluation.split", "data.root"):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            get_config(None, [f"{key}=null"])
