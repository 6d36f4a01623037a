"""gender_coco: deterministic, COCO JSONs load in pycocotools, boxes lie inside images, built-in gender gap."""

import json

import numpy as np
import pytest
from common_utils.data import load_image
from common_utils.metrics import coco_ap_ar
from common_utils.synthetic import gender_coco
from pycocotools.coco import COCO

GENDERS, SPLITS = ("women", "men"), ("train", "val", "test")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("gender_coco")
    gender_coco.generate(root, n=40, seed=0)
    return root


def test_deterministic_for_a_seed(tmp_path):
    for sub, seed in (("a", 7), ("b", 7), ("c", 8)):
        gender_coco.generate(tmp_path / sub, n=10, seed=seed)
    files = {sub: {str(p.relative_to(tmp_path / sub)): p.read_bytes() for p in sorted((tmp_path / sub).rglob("*"))
                   if p.is_file()} for sub in "abc"}
    assert files["a"] == files["b"]
    assert files["a"]["gender_men_train.json"] != files["c"]["gender_men_train.json"]


def test_coco_jsons_load_and_boxes_lie_inside_images(dataset):
    image_ids, ann_ids = [], []
    for gender in GENDERS:
        for split in SPLITS:
            path = dataset / f"gender_{gender}_{split}.json"
            assert "info" in json.loads(path.read_text())
            coco = COCO(str(path))
            assert coco.getCatIds() == [1] and coco.loadCats(1)[0]["name"] == "person"
            assert coco.getImgIds()
            image_ids += coco.getImgIds()
            ann_ids += coco.getAnnIds()
            for image in coco.loadImgs(coco.getImgIds()):
                img = load_image(dataset / f"{gender}_split" / split / image["file_name"])
                assert img.size == (image["width"], image["height"]) and 128 <= min(img.size) <= max(img.size) <= 192
                assert image["gender"] == gender
                anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
                assert 1 <= len(anns) <= 3
                for ann in anns:
                    x, y, w, h = ann["bbox"]
                    assert ann["category_id"] == 1 and w > 4 and h > 4
                    assert x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"]
            # ground truth scored as detections is perfect: the JSON is complete for COCO evaluation
            dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
                    for a in coco.loadAnns(coco.getAnnIds())]
            assert coco_ap_ar(coco, dets)["AP"] == pytest.approx(1.0)
    assert len(set(image_ids)) == len(image_ids) and len(set(ann_ids)) == len(ann_ids)  # unique as in COCO


def test_women_figures_are_smaller_and_lower_contrast(dataset):
    scale, contrast = {}, {}
    for gender in GENDERS:
        coco = COCO(str(dataset / f"gender_{gender}_train.json"))
        rel, con = [], []
        for image in coco.loadImgs(coco.getImgIds()):
            img = np.asarray(load_image(dataset / f"{gender}_split" / "train" / image["file_name"]), dtype=np.float32)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
                x, y, w, h = (int(round(v)) for v in ann["bbox"])
                rel.append(h / image["height"])
                con.append(img[y:y + h, x:x + w].std(axis=(0, 1)).mean())
        scale[gender], contrast[gender] = np.mean(rel), np.mean(con)
    assert scale["women"] < scale["men"] - 0.05
    assert contrast["women"] < contrast["men"]
