"""Gender COCO reader, padded batching, and the caption-based gender split tool."""
import json

import pytest
import torch
from common_utils.data import DataFormatError
from faap_detr.datasets.gender_coco import GenderCocoDataset, collate, resize_shape
from faap_detr.datasets.make_gender_split import caption_vote, image_gender, lemma
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


def test_lemmas_and_caption_votes():
    assert [lemma(t) for t in ("men", "women's", "boys'", "ladies", "girls", "wives", "guy", "human", "manhole")] == [
        "man", "woman", "boy", "lady", "girl", "wife", "guy", "human", "manhole"]
    assert caption_vote("Two girls playing frisbee") == {"women"}
    assert caption_vote("The boys are running.") == {"men"}
    assert caption_vote("A man and a woman walking") == {"men", "women"}
    assert caption_vote("The man-made lake near a manhole, a human statue") == set()  # whole words only
    assert caption_vote("A GUY'S bicycle") == {"men"}


def test_caption_vote_over_an_image():
    man = ["A man surfing", "a guy on a wave", "A person on a board", "someone surfing", "a surfer"]
    assert image_gender(man) == ("men", None)
    assert image_gender(man[:1] + man[2:]) == (None, "weak")  # one caption is not a vote of two
    assert image_gender(man[:1] + man[2:], min_votes=1) == ("men", None)  # Burns et al.'s rule
    assert image_gender(man + ["two women watching"]) == (None, "mixed")
    assert image_gender(man + ["two women watching"], max_dissent=1) == ("men", None)
    assert image_gender(["a dog", "a cat"]) == (None, "neutral")


def _build(coco_root, out, **kw):
    return main(["make-gender-split", "--coco-root", str(coco_root), "--out", str(out), *kw.get("args", [])])


def test_split_builder_on_coco_files(synthetic_coco, tmp_path, capsys):
    """On COCO's own layout (the embedded scenes): labels agree with the scenes' true gender, mixed / neutral / weak
    / person-less images are dropped and counted, the carving is deterministic, counts are printed and written."""
    assert _build(synthetic_coco, tmp_path / "a") == 0
    printed = capsys.readouterr().out
    counts = json.loads((tmp_path / "a" / "split_counts.json").read_text())
    truth = json.loads((synthetic_coco / "synthetic_info.json").read_text())["scene_gender"]
    seen = {}
    for split in ("train", "val", "test"):
        assert f"{split} " in printed
        for gender in ("women", "men"):
            data = json.loads((tmp_path / "a" / f"gender_{gender}_{split}.json").read_text())
            assert "info" in data and data["categories"][0]["id"] == 1
            ids = [im["id"] for im in data["images"]]
            assert all(truth[str(i)] == gender for i in ids)  # the vote recovers the scene's gender
            assert not set(ids) & set(seen)
            seen.update(dict.fromkeys(ids, split))
            assert counts["splits"][split][gender]["images"] == len(ids) > 0
            assert (tmp_path / "a" / f"{gender}_split" / split / data["images"][0]["file_name"]).is_file()
            person = {a["image_id"] for a in data["annotations"] if a["category_id"] == 1}
            assert person == set(ids)  # only images with a person box
            src = "train2017" if split == "train" else "val2017"
            assert counts["splits"][split][gender]["source"] == src
    dropped = {k: sum(d[k] for d in counts["dropped"].values()) for k in ("mixed", "neutral", "weak", "no_person")}
    n_empty = sum(1 for g in truth.values() if g == "empty")
    assert 0 < dropped["no_person"] <= n_empty and dropped["mixed"] > 0 and dropped["weak"] > 0
    assert sum(dropped.values()) + len(seen) == len(truth)
    assert _build(synthetic_coco, tmp_path / "b") == 0  # deterministic: byte-identical files
    for name in [p.name for p in (tmp_path / "a").glob("*.json")]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert _build(synthetic_coco, tmp_path / "c", args=["--salt", "other"]) == 0
    val_a = json.loads((tmp_path / "a" / "gender_men_val.json").read_text())["images"]
    val_c = json.loads((tmp_path / "c" / "gender_men_val.json").read_text())["images"]
    assert val_a != val_c  # the salt changes the carving


def test_split_builder_names_a_missing_annotation_file(tmp_path):
    with pytest.raises(DataFormatError, match="captions_train2017.json"):
        _build(tmp_path, tmp_path / "out")
