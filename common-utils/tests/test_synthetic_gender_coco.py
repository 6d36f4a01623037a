"""gender_coco: deterministic, COCO's own layout (instances + five captions per image, pycocotools loads both),
boxes inside images, gender only in the captions, a built-in detection gap between women's and men's scenes."""

import json

import numpy as np
import pytest
from common_utils.data import load_image
from common_utils.metrics import coco_ap_ar
from common_utils.synthetic import gender_coco
from pycocotools.coco import COCO

PARTS = ("train", "val")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("gender_coco")
    gender_coco.generate(root, n=60, seed=0)
    return root


def test_deterministic_for_a_seed(tmp_path):
    for sub, seed in (("a", 7), ("b", 7), ("c", 8)):
        gender_coco.generate(tmp_path / sub, n=12, seed=seed)
    files = {sub: {str(p.relative_to(tmp_path / sub)): p.read_bytes() for p in sorted((tmp_path / sub).rglob("*"))
                   if p.is_file()} for sub in "abc"}
    assert files["a"] == files["b"]
    assert files["a"]["annotations/captions_train2017.json"] != files["c"]["annotations/captions_train2017.json"]


def test_coco_files_load_and_boxes_lie_inside_images(dataset):
    image_ids, ann_ids = [], []
    for part in PARTS:
        inst = COCO(str(dataset / "annotations" / f"instances_{part}2017.json"))
        caps = COCO(str(dataset / "annotations" / f"captions_{part}2017.json"))
        assert {"info", "licenses"} <= set(json.loads((dataset / "annotations" / f"instances_{part}2017.json")
                                                      .read_text()))
        assert inst.getCatIds() == [1] and inst.loadCats(1)[0]["name"] == "person"
        assert caps.getImgIds() == inst.getImgIds() and inst.getImgIds()
        image_ids += inst.getImgIds()
        ann_ids += inst.getAnnIds()
        for image in inst.loadImgs(inst.getImgIds()):
            img = load_image(dataset / f"{part}2017" / image["file_name"])
            assert img.size == (image["width"], image["height"]) and 128 <= min(img.size) <= max(img.size) <= 192
            assert "gender" not in image  # as in COCO: the gender is only in the captions
            assert len(caps.getAnnIds(imgIds=image["id"])) == gender_coco.CAPTIONS_PER_IMAGE
            for ann in inst.loadAnns(inst.getAnnIds(imgIds=image["id"])):
                x, y, w, h = ann["bbox"]
                assert ann["category_id"] == 1 and w > 4 and h > 4
                assert x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"]
        dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
                for a in inst.loadAnns(inst.getAnnIds())]
        assert coco_ap_ar(inst, dets)["AP"] == pytest.approx(1.0)  # complete for COCO evaluation
    assert len(set(image_ids)) == len(image_ids) and len(set(ann_ids)) == len(ann_ids)  # unique as in COCO


def test_captions_carry_the_scene_gender(dataset):
    truth = json.loads((dataset / "synthetic_info.json").read_text())["scene_gender"]
    assert set(truth.values()) == {"men", "women", "mixed", "empty"}
    words = {"men": {"man", "men", "guy", "guys", "boy", "boys", "male", "males"},
             "women": {"woman", "women", "lady", "ladies", "girl", "girls", "female", "females"}}
    named = {"men": 0, "women": 0, "other": 0}
    for part in PARTS:
        caps = json.loads((dataset / "annotations" / f"captions_{part}2017.json").read_text())["annotations"]
        inst = json.loads((dataset / "annotations" / f"instances_{part}2017.json").read_text())
        boxes = {a["image_id"] for a in inst["annotations"]}
        for c in caps:
            scene = truth[str(c["image_id"])]
            tokens = {t.strip(".,'s ") for t in c["caption"].lower().split()}
            if scene in ("men", "women"):
                assert c["image_id"] in boxes
                for g, w in words.items():
                    if tokens & w:
                        named[g if g == scene else "other"] += 1
            if scene == "empty":
                assert c["image_id"] not in boxes  # no person, though a caption may name one's belongings
    assert named["men"] > 10 and named["women"] > 10 and named["other"] < 0.1 * (named["men"] + named["women"])


def test_women_figures_are_smaller_and_lower_contrast(dataset):
    truth = json.loads((dataset / "synthetic_info.json").read_text())["scene_gender"]
    scale, contrast = {"men": [], "women": []}, {"men": [], "women": []}
    for part in PARTS:
        inst = COCO(str(dataset / "annotations" / f"instances_{part}2017.json"))
        for image in inst.loadImgs(inst.getImgIds()):
            gender = truth[str(image["id"])]
            if gender not in scale:
                continue
            img = np.asarray(load_image(dataset / f"{part}2017" / image["file_name"]), dtype=np.float32)
            for ann in inst.loadAnns(inst.getAnnIds(imgIds=image["id"])):
                x, y, w, h = (int(round(v)) for v in ann["bbox"])
                scale[gender].append(h / image["height"])
                contrast[gender].append(img[y:y + h, x:x + w].std(axis=(0, 1)).mean())
    assert np.mean(scale["women"]) < np.mean(scale["men"]) - 0.05
    assert np.mean(contrast["women"]) < np.mean(contrast["men"])
