"""Readers of manifest, PG-FDD, SPAI and DeepfakeBench formats: good input parses, bad input names file and line."""

import json
import logging
import re
from pathlib import Path

import pytest
from common_utils.data import (
    SUBGROUP_NAMES,
    DataFormatError,
    read_deepfakebench_json,
    read_manifest,
    read_pgfdd_csv,
    read_spai_csv,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def touch(root: Path, *names: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"x")


def raises_at(path: Path, line: int | None, pattern: str):
    where = re.escape(f"{path}:{line}") if line is not None else re.escape(str(path))
    return pytest.raises(DataFormatError, match=where + r".*" + pattern)


# ---------------------------------------------------------------------------------------------------- manifest

MANIFEST = (
    "image_path,label,dataset,split\nimages/a.png,0,tconv,train\nimages/b.png,1,tconv,val\n/abs/c.png,1,resynth,test\n"
)


def test_manifest_reads_rows_with_lines_and_resolved_paths(tmp_path):
    csv = write(tmp_path / "manifests" / "m.csv", MANIFEST)
    rows = read_manifest(csv, data_root=tmp_path, check_files=False)
    assert [(r.label, r.dataset, r.split, r.line) for r in rows] == [
        (0, "tconv", "train", 2),
        (1, "tconv", "val", 3),
        (1, "resynth", "test", 4),
    ]
    assert rows[0].image_path == tmp_path / "images/a.png"
    assert rows[2].image_path == Path("/abs/c.png")
    # default root = the CSV's folder; split filter
    rows = read_manifest(csv, splits=["val"], check_files=False)
    assert [r.image_path for r in rows] == [tmp_path / "manifests/images/b.png"]
    assert [r.line for r in read_manifest(csv, splits="test", check_files=False)] == [4]


@pytest.mark.parametrize(
    "row, pattern",
    [
        ("images/x.png,2,tconv,train", "bad label '2'"),
        ("images/x.png,fake,tconv,train", "bad label 'fake'"),
        ("images/x.png,1,tconv,training", "unknown split 'training'"),
        ("images/x.png,1,,train", "empty dataset"),
        (",1,tconv,train", "empty image_path"),
        ("images/x.png,1,tconv", "expected 4 fields"),
    ],
)
def test_manifest_bad_rows_name_file_and_line(tmp_path, row, pattern):
    csv = write(tmp_path / "m.csv", MANIFEST + row + "\n")
    with raises_at(csv, 5, pattern):
        read_manifest(csv, check_files=False)


def test_manifest_missing_column_and_missing_csv(tmp_path):
    csv = write(tmp_path / "m.csv", "image_path,label,split\na.png,0,train\n")
    with raises_at(csv, 1, r"missing column\(s\) \['dataset'\]"):
        read_manifest(csv)
    with raises_at(tmp_path / "nope.csv", None, "file not found"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="unknown split"):
        read_manifest(csv, splits=["dev"])


def test_manifest_check_files_names_row_or_skips_and_logs(tmp_path, caplog):
    csv = write(tmp_path / "m.csv", MANIFEST.replace("/abs/c.png", "images/c.png"))
    touch(tmp_path, "images/a.png", "images/c.png")
    with raises_at(csv, 3, "listed file not found: .*b.png"):
        read_manifest(csv, data_root=tmp_path)
    with caplog.at_level(logging.WARNING):
        rows = read_manifest(csv, data_root=tmp_path, on_missing="skip")
    assert [r.line for r in rows] == [2, 4]
    assert "skipped 1 row" in caplog.text and str(csv) in caplog.text


# ------------------------------------------------------------------------------------------------------ PG-FDD

PGFDD_HEADER = "img_path,label,ismale,isasian,iswhite,isblack,intersec_label\n"
# one row per subgroup: (ismale, isasian, iswhite, isblack) -> intersec_label
PGFDD_ROWS = [
    "im/0.png,0,1,1,-1,-1,0",
    "im/1.png,1,1,-1,1,-1,1",
    "im/2.png,0,1,-1,-1,1,2",
    "im/3.png,1,1,-1,-1,-1,3",
    "im/4.png,0,-1,1,-1,-1,4",
    "im/5.png,1,-1,-1,1,-1,5",
    "im/6.png,0,-1,-1,-1,1,6",
    "im/7.png,1,-1,-1,-1,-1,7",
]


def test_pgfdd_decodes_gender_race_subgroup(tmp_path):
    csv = write(tmp_path / "test.csv", PGFDD_HEADER + "\n".join(PGFDD_ROWS) + "\n")
    rows = read_pgfdd_csv(csv, check_files=False)
    assert [r.subgroup for r in rows] == list(range(8))
    assert [r.gender for r in rows] == [0] * 4 + [1] * 4
    assert [r.race for r in rows] == [0, 1, 2, 3] * 2
    assert [r.label for r in rows] == [0, 1] * 4
    assert rows[5].img_path == tmp_path / "im/5.png" and rows[5].line == 7
    assert [SUBGROUP_NAMES[r.subgroup] for r in rows[:4]] == ["male-asian", "male-white", "male-black", "male-other"]
    assert SUBGROUP_NAMES[6] == "female-black"


def test_pgfdd_intersec_label_disagreeing_with_attributes(tmp_path):
    bad = "im/x.png,1,1,-1,1,-1,2"  # white male labelled as black male
    csv = write(tmp_path / "t.csv", PGFDD_HEADER + PGFDD_ROWS[0] + "\n" + bad + "\n")
    with raises_at(csv, 3, r"intersec_label=2 \(male-black\) disagrees .*male-white.*column_map"):
        read_pgfdd_csv(csv, check_files=False)


def test_pgfdd_column_map_swaps_white_black_and_renames(tmp_path):
    # a file whose "iswhite" column actually holds black (the README caveat) plus renamed path column
    swapped = PGFDD_HEADER.replace("img_path", "path").replace("iswhite,isblack", "isblack,iswhite")
    csv = write(tmp_path / "t.csv", swapped + "\n".join(PGFDD_ROWS) + "\n")
    with pytest.raises(DataFormatError, match="img_path|path"):
        read_pgfdd_csv(csv, check_files=False)
    with raises_at(csv, 3, r"intersec_label=1 \(male-white\) disagrees .*male-black.*swapped"):
        read_pgfdd_csv(csv, column_map={"img_path": "path"}, check_files=False)
    swap = {"img_path": "path", "iswhite": "isblack", "isblack": "iswhite"}
    assert [r.subgroup for r in read_pgfdd_csv(csv, column_map=swap, check_files=False)] == list(range(8))
    # the intersec_label column can be absent when mapped to None: subgroup derived from attributes
    no_inter = write(tmp_path / "n.csv", "img_path,label,ismale,isasian,iswhite,isblack\nim/a.png,1,-1,-1,1,-1\n")
    with raises_at(no_inter, 1, "missing column.*intersec_label"):
        read_pgfdd_csv(no_inter, check_files=False)
    assert read_pgfdd_csv(no_inter, column_map={"intersec_label": None}, check_files=False)[0].subgroup == 5
    with pytest.raises(ValueError, match="unknown key"):
        read_pgfdd_csv(csv, column_map={"is_white": "x"})


@pytest.mark.parametrize(
    "row, pattern",
    [
        ("im/x.png,1,1,1,1,-1,0", r"more than one race column is 1: \['isasian', 'iswhite'\]"),
        ("im/x.png,1,0,1,-1,-1,0", "bad ismale '0'"),
        ("im/x.png,3,1,1,-1,-1,0", "bad label '3'"),
        ("im/x.png,1,1,1,-1,-1,9", "bad intersec_label '9'"),
    ],
)
def test_pgfdd_bad_values_name_line(tmp_path, row, pattern):
    csv = write(tmp_path / "t.csv", PGFDD_HEADER + PGFDD_ROWS[0] + "\n" + row + "\n")
    with raises_at(csv, 3, pattern):
        read_pgfdd_csv(csv, check_files=False)


def test_pgfdd_check_files(tmp_path, caplog):
    csv = write(tmp_path / "t.csv", PGFDD_HEADER + "\n".join(PGFDD_ROWS[:3]) + "\n")
    touch(tmp_path / "root", "im/0.png", "im/2.png")
    with raises_at(csv, 3, "listed file not found: .*im/1.png"):
        read_pgfdd_csv(csv, data_root=tmp_path / "root")
    with caplog.at_level(logging.WARNING):
        rows = read_pgfdd_csv(csv, data_root=tmp_path / "root", on_missing="skip")
    assert [r.subgroup for r in rows] == [0, 2] and "skipped 1 row" in caplog.text
    with pytest.raises(ValueError, match="on_missing"):
        read_pgfdd_csv(csv, on_missing="ignore")


# -------------------------------------------------------------------------------------------------------- SPAI


def test_spai_csv_reads_and_filters(tmp_path):
    csv = write(tmp_path / "spai" / "train.csv", "image,class,split\nimages/real/a.png,0,train\nimages/x/b.png,1,val\n")
    touch(tmp_path, "images/real/a.png", "images/x/b.png")
    rows = read_spai_csv(csv, root=tmp_path)
    assert [(r.image, r.label, r.split, r.line) for r in rows] == [
        (tmp_path / "images/real/a.png", 0, "train", 2),
        (tmp_path / "images/x/b.png", 1, "val", 3),
    ]
    assert [r.line for r in read_spai_csv(csv, root=tmp_path, split="val")] == [3]
    # default root is the CSV's folder (SPAI's --csv-root-dir default): the images are not there
    with raises_at(csv, 2, "listed file not found"):
        read_spai_csv(csv)


@pytest.mark.parametrize(
    "text, line, pattern",
    [
        ("image,class,split\na.png,2,train\n", 2, "bad class '2'"),
        ("image,class,split\na.png,1,dev\n", 2, "unknown split 'dev'"),
        ("image,label,split\na.png,1,train\n", 1, r"missing column\(s\) \['class'\]"),
        ("", 1, "empty file"),
    ],
)
def test_spai_csv_errors(tmp_path, text, line, pattern):
    csv = write(tmp_path / "t.csv", text)
    with raises_at(csv, line, pattern):
        read_spai_csv(csv, check_files=False)


# ------------------------------------------------------------------------------------------------ DeepfakeBench


def dfb_json(tmp_path, with_compression=True):
    def videos(label, n, prefix):
        return {
            f"{prefix}{i}": {"label": label, "frames": [f"rgb/{prefix}{i}/{j:03d}.png" for j in range(2)]}
            for i in range(n)
        }

    def level(d):
        return {"c23": d, "c40": {}} if with_compression else d

    data = {
        "FaceForensics++": {
            "FF-real": {s: level(videos("FF-real", 2, f"r_{s}_")) for s in ("train", "val", "test")},
            "FF-DF": {s: level(videos("FF-DF", 1, f"f_{s}_")) for s in ("train", "val", "test")},
        }
    }
    path = write(tmp_path / "FF.json", json.dumps(data))
    return path, data


@pytest.mark.parametrize("with_compression", [True, False])
def test_deepfakebench_json_frames(tmp_path, with_compression):
    path, _ = dfb_json(tmp_path, with_compression)
    rows = read_deepfakebench_json(
        path, {"FF-real": 0, "FF-DF": 1}, "test", data_root=tmp_path / "d", check_files=False
    )
    assert len(rows) == 6
    assert {r.video for r in rows if r.label == 0} == {"r_test_0", "r_test_1"}
    assert {r.video for r in rows if r.label == 1} == {"f_test_0"}
    assert rows[0].path == tmp_path / "d/rgb/r_test_0/000.png" and rows[0].dataset == "FaceForensics++"


def test_deepfakebench_json_errors_name_key_path(tmp_path):
    path, data = dfb_json(tmp_path)
    with pytest.raises(
        DataFormatError,
        match=r"FF\.json \[FaceForensics\+\+\.FF-DF\.train\.c23\.f_train_0\.label\]: "
        r"label 'FF-DF' not in label_dict",  # every split is validated, train first
    ):
        read_deepfakebench_json(path, {"FF-real": 0}, "test", check_files=False)
    with pytest.raises(DataFormatError, match=r"\[FaceForensics\+\+\.FF-real\.train\]: no 'c40x' level"):
        read_deepfakebench_json(path, {"FF-real": 0, "FF-DF": 1}, "val", compression="c40x", check_files=False)
    del data["FaceForensics++"]["FF-DF"]["train"]
    write(path, json.dumps(data))
    with pytest.raises(DataFormatError, match=r"\[FaceForensics\+\+\.FF-DF\]: no 'train' split"):
        read_deepfakebench_json(path, {"FF-real": 0, "FF-DF": 1}, "train", check_files=False)
    data["FaceForensics++"]["FF-real"]["test"]["c23"]["r_test_1"]["frames"][1] = 7
    write(path, json.dumps(data))
    with pytest.raises(DataFormatError, match=r"r_test_1\.frames\[1\]\]: bad frame path 7"):
        read_deepfakebench_json(path, {"FF-real": 0, "FF-DF": 1}, "test", check_files=False)
    write(path, "{not json")
    with raises_at(path, None, "not valid JSON"):
        read_deepfakebench_json(path, {}, "test")


def test_deepfakebench_json_check_files(tmp_path, caplog):
    path, _ = dfb_json(tmp_path)
    touch(tmp_path, *[f"rgb/r_val_{i}/{j:03d}.png" for i in range(2) for j in range(2)])
    with pytest.raises(
        DataFormatError,
        match=r"\[FaceForensics\+\+\.FF-DF\.val\.c23\.f_val_0\.frames\[0\]\]: "
        r"listed file not found",
    ):
        read_deepfakebench_json(path, {"FF-real": 0, "FF-DF": 1}, "val")
    with caplog.at_level(logging.WARNING):
        rows = read_deepfakebench_json(path, {"FF-real": 0, "FF-DF": 1}, "val", on_missing="skip")
    assert len(rows) == 4 and all(r.label == 0 for r in rows) and "skipped 2 row" in caplog.text
