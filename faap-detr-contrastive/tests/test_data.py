"""Gender COCO reader, padded batching, and the caption-based gender split tool."""
import json

import pytest
import torch
from common_utils.data import DataFormatError
from faap_detr.datasets.gender_coco import GenderCocoDataset, collate, resize_shape
from faap_detr.datasets.make_gender_split import caption_gender
from faap_detr.main import main


def test_reader_and_collate(gender_data):
    ds = GenderCocoDataset(gender_data, "train", image_size=64, max_size=96)
    assert len(ds) == 12 and sorted(set(ds.genders)) == [0, 1]
    pixels, target = ds[0]
    assert pixels.min() >= 0 and pixels.max() <= 1
    assert min(pixels.shape[1:]) <= 64 and max(pixels.shape[1:]) <= 96 and 64 in pixels.shape or 96 in pixels.shape
    assert target["boxes"].shape == (1, 4) and (target["boxes"] > 0).all() and (target["boxes"] <= 1).all()
    batch, mask, targets = collate([ds[0], ds[7]])
    for i, (p, _) in enumerate([ds[0], ds[7]]):
        assert (~mask[i]).sum() == p.shape[1] * p.shape[2]
        assert torch.equal(batch[i, :, : p.shape[1], : p.shape[2]], p)
    assert batch[mask.unsqueeze(1).expand_as(batch)].abs().sum() == 0


def test_resize_rule():
    assert resize_shape(480, 640, 800, 1333) == (800, 1066)
    assert resize_shape(100, 1000, 800, 1333) == (133, 1330)  # upstream: int(round(...)) then int()


def test_bad_json_is_named(tmp_path, gender_data):
    import shutil
    root = tmp_path / "bad"
    shutil.copytree(gender_data, root)
    data = json.loads((root / "gender_men_train.json").read_text())
    data["annotations"][2].pop("bbox")
    (root / "gender_men_train.json").write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"gender_men_train.json.*annotations\[2\].bbox"):
        GenderCocoDataset(root, "train")
    (root / "gender_women_val.json").unlink()
    with pytest.raises(DataFormatError, match="gender_women_val.json"):
        GenderCocoDataset(root, "val")


def test_caption_gender_words():
    assert caption_gender(["A man riding a horse."]) == "men"
    assert caption_gender(["Two women", "a lady with an umbrella"]) == "women"
    assert caption_gender(["A man and a woman walking"]) is None  # mixed -> dropped
    assert caption_gender(["A dog on a sofa"]) is None
    assert caption_gender(["The manager of the shop"]) is None  # whole words only


def test_make_gender_split_cli(tmp_path):
    caps = {"annotations": [
        {"image_id": 1, "caption": "A man surfing"}, {"image_id": 1, "caption": "a guy on a wave"},
        {"image_id": 2, "caption": "A woman with a kite"}, {"image_id": 3, "caption": "A boy and his sister"},
        {"image_id": 4, "caption": "a red bus"}]}
    inst = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 10, "width": 10} for i in range(1, 5)],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0},
                            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2], "iscrowd": 0},
                            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    (tmp_path / "inst.json").write_text(json.dumps(inst))
    out = tmp_path / "out"
    main(["make-gender-split", "--captions", str(tmp_path / "caps.json"), "--instances", str(tmp_path / "inst.json"),
          "--out", str(out), "--split", "val", "--person-only"])
    men = json.loads((out / "gender_men_val.json").read_text())
    women = json.loads((out / "gender_women_val.json").read_text())
    assert [im["id"] for im in men["images"]] == [1] and [a["id"] for a in men["annotations"]] == [10]
    assert [im["id"] for im in women["images"]] == [2] and "info" in women
    layout = json.loads((out / "dataset_layout.json").read_text())
    assert layout["caption_split_counts"]["val"] == {
        "dropped_mixed": 1, "dropped_none": 1, "women": {"images": 1, "annotations": 1},
        "men": {"images": 1, "annotations": 1}}
    assert layout["splits"]["val"]["men"]["images"] == 1
