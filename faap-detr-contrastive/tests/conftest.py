import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def shared_dir():
    return Path(os.environ.get("SHARED_DIR", Path(__file__).resolve().parents[2] / "../shared")).resolve()


def fixture_dir(name):
    d = shared_dir() / "fixtures" / "parity" / name
    if not d.is_dir():
        pytest.skip(f"parity fixtures not found at {d} (../shared absent; set SHARED_DIR)")
    return d


def write_gender_coco(root, n_per_split=6, splits=("train", "val"), seed=0):
    """Tiny gender_coco layout: noise images with one bright 'person' rectangle (category 1) each."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    image_id = 1
    for split in splits:
        for gender in ("men", "women"):
            d = root / f"{gender}_split" / split
            d.mkdir(parents=True, exist_ok=True)
            images, anns = [], []
            for k in range(n_per_split):
                h, w = int(rng.integers(48, 72)), int(rng.integers(60, 90))
                img = (rng.random((h, w, 3)) * 80).astype(np.uint8)
                bw, bh = int(rng.integers(12, w // 2)), int(rng.integers(16, h - 8))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                img[y:y + bh, x:x + bw] = (220, 180, 60) if gender == "men" else (60, 180, 220)
                name = f"{gender}_{split}_{k}.png"
                Image.fromarray(img).save(d / name)
                images.append({"id": image_id, "file_name": name, "height": h, "width": w})
                anns.append({"id": image_id, "image_id": image_id, "category_id": 1, "bbox": [x, y, bw, bh],
                             "area": bw * bh, "iscrowd": 0})
                image_id += 1
            data = {"info": {"description": "test"}, "images": images, "annotations": anns,
                    "categories": [{"id": 1, "name": "person"}]}
            (root / f"gender_{gender}_{split}.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="session")
def gender_data(tmp_path_factory):
    return write_gender_coco(tmp_path_factory.mktemp("gender_coco"), splits=("train", "val", "test"))


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory):
    """The embedded gender_coco scenes as COCO distributes them (annotations/ + train2017/ + val2017/)."""
    from common_utils.synthetic import gender_coco

    root = tmp_path_factory.mktemp("coco")
    gender_coco.generate(root, n=60, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_detr_ckpt(tmp_path_factory):
    """A random tiny DETR (configs/tiny.yaml) saved in the official release format."""
    from faap_detr.main import load_cfg
    from faap_detr.models.detr import build

    torch.manual_seed(0)
    model = build(load_cfg(ROOT / "configs" / "tiny.yaml"))[0]
    path = tmp_path_factory.mktemp("detr") / "detr_tiny.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture
def tiny_cfg_args(gender_data, tiny_detr_ckpt, tmp_path):
    """(config path, overrides) for a fast CPU run: 64 px images, one batch of 4 per epoch."""
    return ROOT / "configs" / "tiny.yaml", [
        f"data.root={gender_data}", f"run_dir={tmp_path / 'run'}", "device=cpu", f"detr.checkpoint={tiny_detr_ckpt}",
        "train.batch_size=4", "train.batches_per_epoch=1", "eval.batch_size=8", "eval.bootstrap=20",
        "eval.n_visualize=1", "detr_train.batch_size=4"]
