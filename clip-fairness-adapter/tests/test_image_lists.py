"""Readers of the data sets as distributed: PG-FDD, lists without demographics, FairFace, UTKFace, CausalFace."""
import logging

import pytest
from clip_fairness_adapter.dataset import folder_images, read_set, read_sets
from common_utils.data import DataFormatError
from PIL import Image


def image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return path


def test_fairface_label_file(tmp_path):
    root = tmp_path / "fairface"
    for i in (1, 2, 3):
        image(root / "train" / f"{i}.jpg")
    (root / "fairface_label_train.csv").write_text(
        "file,age,gender,race,service_test\ntrain/1.jpg,50-59,Male,East Asian,True\n"
        "train/2.jpg,30-39,Female,Latino_Hispanic,False\ntrain/3.jpg,3-9,Female,Black,False\n")
    rows = read_set({"format": "fairface", "path": "fairface/fairface_label_train.csv"}, tmp_path)
    assert [(r.gender, r.race, r.subgroup, r.label) for r in rows] == [(0, 0, 0, -1), (1, 3, 7, -1), (1, 2, 6, -1)]
    assert rows[0].img_path == root / "train" / "1.jpg"
    (root / "fairface_label_train.csv").write_text("file,age,gender,race\ntrain/1.jpg,1,Male,Martian\n")
    with pytest.raises(DataFormatError, match=r"csv:2: .*Martian"):
        read_set({"format": "fairface", "path": "fairface/fairface_label_train.csv"}, tmp_path)


def test_utkface_names_and_split(tmp_path, caplog):
    folder = tmp_path / "UTKFace" / "part1"
    names = [f"{20 + i}_{i % 2}_{i % 5}_2017{i:010d}.jpg.chip.jpg" for i in range(10)]
    for n in names:
        image(folder / n)
    image(folder / "61_1_20170109150557335.jpg.chip.jpg")  # as distributed: a name without the race field
    with caplog.at_level(logging.WARNING):
        rows = read_set({"format": "utkface", "path": "UTKFace"}, tmp_path)
    assert len(rows) == 10 and "61_1_20170109150557335" in caplog.text
    by_name = {r.img_path.name: r for r in rows}
    r = by_name[names[2]]  # gender 0, UTKFace race 2 = Asian -> 0
    assert (r.gender, r.race) == (0, 0)
    r = by_name[names[4]]  # gender 0, race 4 = Others -> other
    assert (r.gender, r.race) == (0, 3)
    r = by_name[names[1]]  # female, race 1 = Black -> 2
    assert (r.gender, r.race, r.subgroup) == (1, 2, 6)
    train = read_set({"format": "utkface", "path": "UTKFace", "split": "train"}, tmp_path)
    test = read_set({"format": "utkface", "path": "UTKFace", "split": "test"}, tmp_path)
    assert len(train) == 8 and len(test) == 1 and not {r.img_path for r in train} & {r.img_path for r in test}


def test_causalface_words_not_substrings(tmp_path):
    base = tmp_path / "CausalFace" / "final_picked_age" / "seed_3"
    image(base / "asian_female_age_0.8_o2.png")
    image(base / "indian_male_age_-0.4_o1.png")
    image(base / "asian_female_age_0.8_o2_rm_bg.png")  # background-removed copy: skipped
    rows = sorted(read_set({"format": "causalface", "path": "CausalFace"}, tmp_path), key=lambda r: r.img_path.name)
    assert [(r.img_path.name, r.gender, r.race) for r in rows] == [("asian_female_age_0.8_o2.png", 1, 0),
                                                                    ("indian_male_age_-0.4_o1.png", 0, 3)]
    image(base / "asian_person_age_0.1_o1.png")
    with pytest.raises(DataFormatError, match="gender word"):
        read_set({"format": "causalface", "path": "CausalFace"}, tmp_path)


def test_list_without_demographics(tmp_path):
    image(tmp_path / "v1" / "0.png")
    image(tmp_path / "v2" / "0.png")
    (tmp_path / "test.csv").write_text("img_path,label\nv1/0.png,0\nv2/0.png,1\n")
    rows = read_set({"format": "csv", "path": "test.csv"}, tmp_path)
    assert [(r.label, r.gender, r.race, r.subgroup) for r in rows] == [(0, -1, -1, -1), (1, -1, -1, -1)]
    (tmp_path / "bad.csv").write_text("img_path,label\nv1/0.png,2\n")
    with pytest.raises(DataFormatError, match=r"bad.csv:2: bad label"):
        read_set({"format": "csv", "path": "bad.csv"}, tmp_path)


def test_entry_errors_name_the_entry(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        read_set({"format": "celebdf", "path": "x"}, tmp_path)
    with pytest.raises(ValueError, match="'split' applies"):
        read_set({"format": "csv", "path": "x", "split": "train"}, tmp_path)
    with pytest.raises(ValueError, match="unknown keys"):
        read_set({"format": "csv", "path": "x", "paths": "y"}, tmp_path)
    with pytest.raises(DataFormatError, match="folder not found"):
        read_sets([{"format": "utkface", "path": "nowhere"}], tmp_path)


def test_generated_data_reads_in_every_format(data_root):
    """The embedded data ships each layout; every reader takes it."""
    counts = {fmt: len(read_set({"format": fmt, "path": path}, data_root)) for fmt, path in
              (("fairface", "faces/fairface/fairface_label_train.csv"), ("utkface", "faces/UTKFace"),
               ("causalface", "faces/CausalFace"), ("csv", "lists/test_shifted.csv"),
               ("pgfdd", "pgfdd/test_shifted.csv"))}
    assert all(counts.values()) and counts["csv"] == counts["pgfdd"]
    faces = read_set({"format": "fairface", "path": "faces/fairface/fairface_label_train.csv"}, data_root)
    assert {r.subgroup for r in faces} == set(range(8))


def test_folder_images(tmp_path):
    image(tmp_path / "a" / "x.png")
    image(tmp_path / "b.JPG")
    (tmp_path / "notes.txt").write_text("x")
    assert sorted(p.name for p in folder_images(tmp_path)) == ["b.JPG", "x.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no images"):
        folder_images(tmp_path / "empty")
