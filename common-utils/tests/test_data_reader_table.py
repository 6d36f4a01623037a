"""Table of valid and malformed variants of the seven input formats.

Every valid variant (UTF-8 BOM, CRLF, trailing newline or not, spaces where the format allows them, ...) parses to
the same rows as the canonical file; every malformed one raises a one-line `DataFormatError` that starts with the
file and the place (``<file>:<line>:`` or ``<file> [<JSON path>]:``) and says what is wrong.
Formats: manifest CSV, PG-FDD CSV, SPAI CSV, DeepfakeBench JSON, ASVspoof protocol, PartialSpoof labels, COCO JSON.
"""
from __future__ import annotations

import io
import json
import logging
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from common_utils.data import (
    DataFormatError,
    read_asvspoof_protocol,
    read_coco_json,
    read_deepfakebench_json,
    read_manifest,
    read_partialspoof_labels,
    read_pgfdd_csv,
    read_spai_csv,
)

LATIN1 = "é".encode("latin-1")  # 0xe9: not UTF-8


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def bom(text: str) -> bytes:
    return b"\xef\xbb\xbf" + text.encode()


def latin1_at(text: str, line: int) -> bytes:
    """`text` with a Latin-1 'é' appended to (1-based) `line`."""
    lines = text.encode().split(b"\n")
    lines[line - 1] += LATIN1
    return b"\n".join(lines)


def check(path: Path, content: bytes | str, read, expected, where=None, pattern=""):
    """Valid case: read(path) == expected. Bad case (expected is None): a DataFormatError at `where`."""
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    if expected is not None:
        assert read(path) == expected
        return
    place = f"{path}:{where}" if isinstance(where, int) else f"{path} [{where}]" if where else str(path)
    with pytest.raises(DataFormatError, match=re.escape(place) + ": .*" + pattern) as e:
        read(path)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------- the three CSVs

def csv_table(header: str, rows: list[str], split_col: bool):
    """Valid and bad variants of a CSV whose first column is the image path (rows hold two distinct images)."""
    base = header + "\n" + "\n".join(rows) + "\n"
    cols = header.split(",")
    n = len(cols)
    row0 = rows[0].split(",")
    valid = {
        "canonical": base,
        "no trailing newline": base.rstrip("\n"),
        "CRLF": crlf(base),
        "BOM": bom(base),
        "BOM + CRLF, no trailing newline": bom(crlf(base).rstrip("\r\n")),
        "spaces around fields": " , ".join(cols) + "\n" + "\n".join("  " + r.replace(",", " ,\t") + " " for r in rows),
        "blank and whitespace-only lines": "\n" + header + "\n\n" + rows[0] + "\n   \n" + "\n".join(rows[1:]) + "\n\n",
        "quoted fields": header + "\n" + "\n".join(",".join(f'"{v}"' for v in r.split(",")) for r in rows) + "\n",
        "extra column": header + ",note\n" + "\n".join(r + ",hello" for r in rows) + "\n",
        "columns reordered": ",".join(reversed(cols)) + "\n"
                             + "\n".join(",".join(reversed(r.split(","))) for r in rows),
    }
    bad = {
        "Latin-1 byte in a row": (latin1_at(base, 3), 3, "not UTF-8"),
        "Latin-1 byte in the header": (latin1_at(base, 1), 1, "not UTF-8"),
        "empty file": (b"", 1, "empty file"),
        "only blank lines": ("\n \n\n", 1, "empty file"),
        "header without rows": (header + "\n", 1, "no data rows"),
        "header without rows, CRLF and blank lines": (crlf(header + "\n\n\n"), 1, "no data rows"),
        "repeated header column": (header + f",{cols[1]}\n" + "\n".join(r + ",0" for r in rows),
                                   1, f"column '{cols[1]}' appears twice in the header \\(columns 2 and {n + 1}\\)"),
        "missing column": (",".join(cols[:-1]) + "\n" + "\n".join(",".join(r.split(",")[:-1]) for r in rows),
                           1, "missing column"),
        "too few fields": (header + "\n" + ",".join(row0[:-1]) + "\n" + rows[1], 2, f"expected {n} fields"),
        "too many fields": (header + "\n" + rows[0] + ",x\n" + rows[1], 2, f"expected {n} fields"),
        "row twice": (base + rows[0] + "\n", 4, "listed twice \\(first at line 2\\)"),
        "row twice, spelled ./": (base + "./" + rows[0] + "\n", 4, "listed twice \\(first at line 2\\)"),
        "empty image path": (header + "\n" + "," + ",".join(row0[1:]) + "\n" + rows[1], 2, "empty"),
        "unclosed quote": (header + '\n"' + rows[0] + "\n" + rows[1] + "\n", 2, "an unclosed quote"),
        "quoted line break": (header + '\n"' + rows[0].replace(",", '\n",', 1) + "\n" + rows[1] + "\n", 2,
                              "line break"),
        "text after a closing quote": (header + '\n"a"b' + rows[0][rows[0].index(","):] + "\n", 2, "malformed CSV"),
        "NUL byte in a field": (header + "\n" + rows[0].replace(".png", "\x00.png") + "\n", 2, "control character"),
    }
    if split_col:
        split = cols.index("split")
        other = "test" if row0[split] != "test" else "train"
        moved = row0[:split] + [other] + row0[split + 1:]
        bad["same image in two splits"] = (base + ",".join(moved) + "\n", 4,
                                           f"in split '{row0[split]}' \\(line 2\\) and in split '{other}'")
    return valid, bad


MANIFEST_ROWS = ["img/a.png,0,tconv,train", "img/b.png,1,resynth,test"]
MANIFEST_VALID, MANIFEST_BAD = csv_table("image_path,label,dataset,split", MANIFEST_ROWS, split_col=True)
MANIFEST_BAD |= {
    "label 2": ("image_path,label,dataset,split\nimg/a.png,2,tconv,train\n", 2, "bad label '2'"),
    "label text": ("image_path,label,dataset,split\nimg/a.png,fake,tconv,train\n", 2, "bad label 'fake'"),
    "label nan": ("image_path,label,dataset,split\nimg/a.png,nan,tconv,train\n", 2, "bad label 'nan'"),
    "unknown split": ("image_path,label,dataset,split\nimg/a.png,0,tconv,training\n", 2, "unknown split 'training'"),
    "empty dataset": ("image_path,label,dataset,split\nimg/a.png,0,,train\n", 2, "empty dataset"),
}


def _manifest(path):
    return [(r.image_path.name, r.label, r.dataset, r.split) for r in read_manifest(path, check_files=False)]


@pytest.mark.parametrize("name", sorted(MANIFEST_VALID))
def test_manifest_valid(tmp_path, name):
    check(tmp_path / "m.csv", MANIFEST_VALID[name], _manifest,
          [("a.png", 0, "tconv", "train"), ("b.png", 1, "resynth", "test")])


@pytest.mark.parametrize("name", sorted(MANIFEST_BAD))
def test_manifest_bad(tmp_path, name):
    content, where, pattern = MANIFEST_BAD[name]
    check(tmp_path / "m.csv", content, _manifest, None, where, pattern)


PGFDD_HEADER = "img_path,label,ismale,isasian,iswhite,isblack,intersec_label"
PGFDD_ROWS = ["img/a.png,0,1,1,-1,-1,0", "img/b.png,1,-1,-1,-1,1,6"]  # male-asian 0, female-black 6
PGFDD_VALID, PGFDD_BAD = csv_table(PGFDD_HEADER, PGFDD_ROWS, split_col=False)
PGFDD_BAD |= {
    "attribute 0": (PGFDD_HEADER + "\nimg/a.png,0,0,1,-1,-1,0\n", 2, "bad ismale '0'"),
    "two races": (PGFDD_HEADER + "\nimg/a.png,0,1,1,1,-1,0\n", 2, "more than one race"),
    "intersec_label disagrees": (PGFDD_HEADER + "\nimg/a.png,0,1,1,-1,-1,5\n", 2, "disagrees with the attribute"),
    "intersec_label 8": (PGFDD_HEADER + "\nimg/a.png,0,1,1,-1,-1,8\n", 2, "bad intersec_label '8'"),
}


def _pgfdd(path):
    return [(r.img_path.name, r.label, r.gender, r.race, r.subgroup) for r in read_pgfdd_csv(path, check_files=False)]


@pytest.mark.parametrize("name", sorted(PGFDD_VALID))
def test_pgfdd_valid(tmp_path, name):
    check(tmp_path / "p.csv", PGFDD_VALID[name], _pgfdd, [("a.png", 0, 0, 0, 0), ("b.png", 1, 1, 2, 6)])


@pytest.mark.parametrize("name", sorted(PGFDD_BAD))
def test_pgfdd_bad(tmp_path, name):
    content, where, pattern = PGFDD_BAD[name]
    check(tmp_path / "p.csv", content, _pgfdd, None, where, pattern)


SPAI_ROWS = ["img/a.png,0,train", "img/b.png,1,val"]
SPAI_VALID, SPAI_BAD = csv_table("image,class,split", SPAI_ROWS, split_col=True)
SPAI_BAD |= {
    "class -1": ("image,class,split\nimg/a.png,-1,train\n", 2, "bad class '-1'"),
    "split empty": ("image,class,split\nimg/a.png,1,\n", 2, "unknown split ''"),
}


def _spai(path):
    return [(r.image.name, r.label, r.split) for r in read_spai_csv(path, check_files=False)]


@pytest.mark.parametrize("name", sorted(SPAI_VALID))
def test_spai_valid(tmp_path, name):
    check(tmp_path / "s.csv", SPAI_VALID[name], _spai, [("a.png", 0, "train"), ("b.png", 1, "val")])


@pytest.mark.parametrize("name", sorted(SPAI_BAD))
def test_spai_bad(tmp_path, name):
    content, where, pattern = SPAI_BAD[name]
    check(tmp_path / "s.csv", content, _spai, None, where, pattern)


def test_allow_duplicates_keeps_and_counts(tmp_path, caplog):
    path = tmp_path / "m.csv"
    path.write_text(MANIFEST_BAD["row twice"][0])
    with caplog.at_level(logging.WARNING):
        rows = read_manifest(path, check_files=False, allow_duplicates=True)
    assert len(rows) == 3 and "1 repeated image_path(s) kept" in caplog.text
    path.write_text(SPAI_BAD["same image in two splits"][0])
    assert len(read_spai_csv(path, check_files=False, allow_duplicates=True, split="train")) == 1
    path.write_text(PGFDD_BAD["row twice"][0])
    assert len(read_pgfdd_csv(path, check_files=False, allow_duplicates=True)) == 3


def test_split_filter_still_sees_a_leak(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(MANIFEST_BAD["same image in two splits"][0])
    with pytest.raises(DataFormatError, match="two splits"):
        read_manifest(path, splits="train", check_files=False)


# ------------------------------------------------------------------------------------------ DeepfakeBench JSON

def dfb(**override) -> dict:
    def videos(prefix, split):
        return {f"{prefix}_{split}": {"label": "FF-real" if prefix == "r" else "FF-DF",
                                      "frames": [f"rgb/{prefix}_{split}/{j}.png" for j in range(2)]}}
    data = {"FF++": {"FF-real": {s: {"c23": videos("r", s)} for s in ("train", "val", "test")},
                     "FF-DF": {s: videos("f", s) for s in ("train", "val", "test")}}}
    for dotted, value in override.items():
        *parents, last = dotted.split("/")
        node = data
        for k in parents:
            node = node[k]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return data


_DELETE = object()
DFB = json.dumps(dfb(), indent=2)
DFB_VALID = {
    "canonical": DFB, "minified": json.dumps(dfb()), "no trailing newline": DFB.rstrip(),
    "trailing newline": DFB + "\n", "CRLF": crlf(DFB), "BOM": bom(DFB),
    "val = test (DeepfakeBench reuses test as val)": json.dumps(
        dfb(**{"FF++/FF-DF/val": dfb()["FF++"]["FF-DF"]["test"]})),
}
V = "FF++.FF-DF.train.f_train"
DFB_BAD = {
    "not JSON": ("{\n  \"FF++\": [1,\n}\n", 3, "not valid JSON"),
    "Latin-1 byte": (latin1_at(DFB, 4), 4, "not UTF-8"),
    "top level a list": ("[1, 2]", "(top)", "expected a non-empty object"),
    "empty object": ("{}", "(top)", "expected a non-empty object"),
    "repeated video key": (DFB.replace('"f_test": {', '"f_test": {"label": "FF-DF", "frames": ["x.png"]},\n'
                                       '      "f_test": {', 1), "FF++.FF-DF.test.f_test", "appears twice"),
    "split missing": (json.dumps(dfb(**{"FF++/FF-DF/test": _DELETE})), "FF++.FF-DF", "no 'test' split"),
    "label not a string": (json.dumps(dfb(**{"FF++/FF-DF/train/f_train/label": ["FF-DF"]})), V + ".label",
                           "not in label_dict"),
    "label unknown": (json.dumps(dfb(**{"FF++/FF-DF/train/f_train/label": "FF-F2F"})), V + ".label", "not in label"),
    "frames not a list": (json.dumps(dfb(**{"FF++/FF-DF/train/f_train/frames": "a.png"})), V + ".frames",
                          "non-empty list"),
    "frames empty": (json.dumps(dfb(**{"FF++/FF-DF/train/f_train/frames": []})), V + ".frames", "non-empty list"),
    "frame not a string": (json.dumps(dfb(**{"FF++/FF-DF/train/f_train/frames": ["a.png", 3]})), V + ".frames[1]",
                           "bad frame path 3"),
    "video without frames": (json.dumps(dfb(**{"FF++/FF-DF/train/f_train": {"label": "FF-DF"}})), V,
                             "needs 'label' and 'frames'"),
    "frame twice in a split": (json.dumps(dfb(**{"FF++/FF-DF/train/f_train/frames": ["a.png", "./a.png"]})),
                               V + ".frames[1]", "listed twice \\(first at " + re.escape(V) + "\\.frames\\[0\\]\\)"),
    "frame in train and test": (json.dumps(dfb(**{"FF++/FF-DF/test/f_test/frames": ["rgb/f_train/0.png"]})),
                                "FF++.FF-DF.test.f_test.frames[0]",
                                "in split 'train' \\(" + re.escape(V) + "\\.frames\\[0\\]\\) and in split 'test'"),
    "compression level missing": (json.dumps(dfb(**{"FF++/FF-real/val": {"c40": {}}})), "FF++.FF-real.val",
                                  "no 'c23' level"),
}


def _dfb(path):
    rows = read_deepfakebench_json(path, {"FF-real": 0, "FF-DF": 1}, "test", check_files=False)
    return [(r.path.parent.name, r.path.name, r.label) for r in rows]


@pytest.mark.parametrize("name", sorted(DFB_VALID))
def test_deepfakebench_valid(tmp_path, name):
    check(tmp_path / "FF.json", DFB_VALID[name], _dfb,
          [("r_test", "0.png", 0), ("r_test", "1.png", 0), ("f_test", "0.png", 1), ("f_test", "1.png", 1)])


@pytest.mark.parametrize("name", sorted(DFB_BAD))
def test_deepfakebench_bad(tmp_path, name):
    content, where, pattern = DFB_BAD[name]
    check(tmp_path / "FF.json", content, _dfb, None, where, pattern)


# ------------------------------------------------------------------------------------------- ASVspoof protocol

PROTOCOL = "LA_0079 LA_T_1138215 - - bonafide\nLA_0079 LA_T_1271820 - A01 spoof\n"
PROTOCOL_VALID = {
    "canonical": PROTOCOL, "no trailing newline": PROTOCOL.rstrip(), "CRLF": crlf(PROTOCOL), "BOM": bom(PROTOCOL),
    "tabs and repeated spaces": PROTOCOL.replace(" ", " \t  "), "blank lines": "\n" + PROTOCOL.replace("\n", "\n\n"),
    "leading and trailing spaces": "  " + PROTOCOL.replace("\n", "  \n  "),
}
PROTOCOL_BAD = {
    "Latin-1 byte": (latin1_at(PROTOCOL, 2), 2, "not UTF-8"),
    "empty file": (b"", None, "no protocol lines"),
    "only blank lines": ("\n  \n", None, "no protocol lines"),
    "four fields": ("LA_0079 LA_T_1 - bonafide\n", 1, "expected 5 fields"),
    "six fields": (PROTOCOL + "LA_0079 LA_T_2 - - bonafide x\n", 3, "expected 5 fields"),
    "bad key": ("LA_0079 LA_T_1 - - genuine\n", 1, "bad key 'genuine'"),
    "key case": ("LA_0079 LA_T_1 - - Bonafide\n", 1, "bad key 'Bonafide'"),
    "bona fide with an attack": ("LA_0079 LA_T_1 - A01 bonafide\n", 1, "does not fit key 'bonafide'"),
    "spoof without an attack": ("LA_0079 LA_T_1 - - spoof\n", 1, "does not fit key 'spoof'"),
    "utterance twice": (PROTOCOL + "LA_0080 LA_T_1138215 - - bonafide\n", 3, "listed twice \\(first at line 1\\)"),
    "utterance twice, CRLF": (crlf(PROTOCOL + "LA_0080 LA_T_1138215 - - bonafide\n"), 3, "listed twice"),
}


def _protocol(path):
    return [tuple(r) for r in read_asvspoof_protocol(path)]


@pytest.mark.parametrize("name", sorted(PROTOCOL_VALID))
def test_protocol_valid(tmp_path, name):
    check(tmp_path / "p.txt", PROTOCOL_VALID[name], _protocol, [
        ("LA_0079", "LA_T_1138215", "-", "bonafide", 1), ("LA_0079", "LA_T_1271820", "A01", "spoof", 0)])


@pytest.mark.parametrize("name", sorted(PROTOCOL_BAD))
def test_protocol_bad(tmp_path, name):
    content, where, pattern = PROTOCOL_BAD[name]
    check(tmp_path / "p.txt", content, _protocol, None, where, pattern)


def test_protocol_allow_duplicates(tmp_path, caplog):
    path = tmp_path / "p.txt"
    path.write_text(PROTOCOL_BAD["utterance twice"][0])
    with caplog.at_level(logging.WARNING):
        assert len(read_asvspoof_protocol(path, allow_duplicates=True)) == 3
    assert "1 repeated utterance(s) kept" in caplog.text


# ------------------------------------------------------------------------------------------ PartialSpoof labels

def npy(obj) -> bytes:
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)
    return buf.getvalue()


def npy_pickle(payload: bytes) -> bytes:
    """A .npy object-array file around a given pickle (e.g. one written by numpy 1 or by hand)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    return buf.getvalue() + payload


class _Evil:
    def __reduce__(self):
        import os
        return os.system, ("true",)


LABELS = {"CON_T_0000001": np.array(["1", "1", "0", "1"]), "LA_T_0000002": np.array(["1", "1"])}
EXPECTED_LABELS = {"CON_T_0000001": [1, 1, 0, 1], "LA_T_0000002": [1, 1]}
LABELS_VALID = {
    "np.save of a dict of str arrays": npy(LABELS),
    "object arrays of str": npy({k: v.astype(object) for k, v in LABELS.items()}),
    "int 0/1 arrays": npy({k: v.astype(int) for k, v in LABELS.items()}),
    "numpy 1 pickle names": npy_pickle(pickle.dumps(np.array(LABELS, dtype=object), protocol=3).replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray")),
}
LABELS_BAD = {
    "text file": (b"CON_T_0000001 1 1 0 1\n", None, "not a .npy file"),
    "raw pickle": (pickle.dumps(LABELS), None, "not a .npy file"),
    "numeric array": (npy(np.zeros(3)), None, "expected a pickled dict"),
    "empty dict": (npy({}), None, "non-empty dict"),
    "list instead of dict": (npy(np.array([np.array(["1"])], dtype=object)), None, "non-empty dict"),
    "non-string utterance id": (npy({1: np.array(["1"])}), None, "utterance id must be a string"),
    "2-D labels": (npy({"u": np.array([["1", "0"]])}), "u", "1-D"),
    "empty labels": (npy({"u": np.array([], dtype=str)}), "u", "non-empty 1-D"),
    "label 2": (npy({"u": np.array(["1", "2"])}), "u", "must be '0'/'1', found '2'"),
    "code-running global": (npy({"u": _Evil()}), None, "cannot unpickle .*global 'posix.system' is not allowed"),
    "truncated": (npy(LABELS)[:60], None, "(not a .npy|cannot unpickle)"),
}


def _labels(path):
    return {k: v.tolist() for k, v in read_partialspoof_labels(path).items()}


@pytest.mark.parametrize("name", sorted(LABELS_VALID))
def test_partialspoof_valid(tmp_path, name):
    check(tmp_path / "seglab.npy", LABELS_VALID[name], _labels, EXPECTED_LABELS)


@pytest.mark.parametrize("name", sorted(LABELS_BAD))
def test_partialspoof_bad(tmp_path, name):
    content, where, pattern = LABELS_BAD[name]
    check(tmp_path / "seglab.npy", content, _labels, None, where, pattern)


# ----------------------------------------------------------------------------------------------- COCO JSON

def coco(**override) -> dict:
    data = {"info": {"description": "t"}, "licenses": [],
            "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 8},
                       {"id": 2, "file_name": "b.png", "width": 10, "height": 8}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5.5, 4], "area": 22.0,
                             "iscrowd": 0, "segmentation": []},
                            {"id": 11, "image_id": 2, "category_id": 1, "bbox": [1, 1, 0, 3], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    for dotted, value in override.items():
        *parents, last = dotted.split("/")
        node = data
        for k in parents:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is _DELETE:
            del node[int(last) if isinstance(node, list) else last]
        else:
            node[int(last) if isinstance(node, list) else last] = value
    return data


COCO = json.dumps(coco(), indent=1)
COCO_VALID = {
    "canonical": COCO, "minified": json.dumps(coco()), "CRLF": crlf(COCO), "BOM": bom(COCO),
    "no trailing newline": COCO.rstrip(), "no info": json.dumps(coco(info=_DELETE)),
    "no annotations": json.dumps(coco(annotations=[])),
}
COCO_BAD = {
    "not JSON": ('{"images": [}', 1, "not valid JSON"),
    "Latin-1 byte": (latin1_at(COCO, 5), 5, "not UTF-8"),
    "top level a list": (json.dumps([coco()]), "(top)", "top level must be an object"),
    "images missing": (json.dumps(coco(images=_DELETE)), "images", "missing or not a list"),
    "annotations an object": (json.dumps(coco(annotations={})), "annotations", "missing or not a list"),
    "image not an object": (json.dumps(coco(**{"images/1": 2})), "images[1]", "must be an object"),
    "image id missing": (json.dumps(coco(**{"images/1/id": _DELETE})), "images[1].id", "missing"),
    "image id a string": (json.dumps(coco(**{"images/1/id": "2"})), "images[1].id", "must be an integer"),
    "image id a bool": (json.dumps(coco(**{"images/0/id": True})), "images[0].id", "must be an integer"),
    "image id a float": (json.dumps(coco(**{"images/1/id": 2.5})), "images[1].id", "must be an integer"),
    "file_name missing": (json.dumps(coco(**{"images/0/file_name": _DELETE})), "images[0].file_name", "missing"),
    "file_name empty": (json.dumps(coco(**{"images/0/file_name": ""})), "images[0].file_name", "non-empty string"),
    "width zero": (json.dumps(coco(**{"images/0/width": 0})), "images[0].width", "positive integer"),
    "image id twice": (json.dumps(coco(**{"images/1/id": 1})), "images[1].id",
                       "image id '1' is listed twice \\(first at images\\[0\\]\\.id\\)"),
    "file_name twice": (json.dumps(coco(**{"images/1/file_name": "a.png"})), "images[1].file_name",
                        "listed twice \\(first at images\\[0\\]\\.file_name\\)"),
    "category id twice": (json.dumps(coco(categories=coco()["categories"] * 2)), "categories[1].id", "listed twice"),
    "category name missing": (json.dumps(coco(**{"categories/0/name": _DELETE})), "categories[0].name", "missing"),
    "annotation id missing": (json.dumps(coco(**{"annotations/1/id": _DELETE})), "annotations[1].id", "missing"),
    "annotation id twice": (json.dumps(coco(**{"annotations/1/id": 10})), "annotations[1].id", "listed twice"),
    "unknown image_id": (json.dumps(coco(**{"annotations/1/image_id": 7})), "annotations[1].image_id",
                         "image_id 7 is not the id of any entry of images"),
    "unknown category_id": (json.dumps(coco(**{"annotations/0/category_id": 3})), "annotations[0].category_id",
                            "category_id 3 is not the id"),
    "category_id a string": (json.dumps(coco(**{"annotations/0/category_id": "1"})), "annotations[0].category_id",
                             "must be an integer"),
    "bbox missing": (json.dumps(coco(**{"annotations/1/bbox": _DELETE})), "annotations[1].bbox", "missing"),
    "bbox three numbers": (json.dumps(coco(**{"annotations/1/bbox": [1, 1, 3]})), "annotations[1].bbox", "four"),
    "bbox strings": (json.dumps(coco(**{"annotations/1/bbox": ["1", "1", "3", "3"]})), "annotations[1].bbox", "four"),
    "bbox NaN": (json.dumps(coco(**{"annotations/1/bbox": [1, 1, float("nan"), 3]})), "annotations[1].bbox", "finite"),
    "bbox Infinity": (json.dumps(coco(**{"annotations/0/bbox": [1, 1, float("inf"), 3]})), "annotations[0].bbox",
                      "finite"),
    "bbox negative": (json.dumps(coco(**{"annotations/1/bbox": [-1, 1, 3, 3]})), "annotations[1].bbox", "non-negative"),
    "bbox booleans": (json.dumps(coco(**{"annotations/1/bbox": [True, 1, 3, 3]})), "annotations[1].bbox", "four"),
    "bbox an object": (json.dumps(coco(**{"annotations/1/bbox": {"x": 1}})), "annotations[1].bbox", "four"),
    "iscrowd 2": (json.dumps(coco(**{"annotations/0/iscrowd": 2})), "annotations[0].iscrowd", "0 or 1"),
    "area NaN": (json.dumps(coco(**{"annotations/0/area": float("nan")})), "annotations[0].area", "finite"),
    "repeated key": (COCO.replace('"file_name": "a.png"', '"file_name": "a.png", "file_name": "c.png"', 1),
                     "images[0].file_name", "appears twice in the same object"),
}


def _coco(path):
    data = read_coco_json(path)
    return [im["file_name"] for im in data["images"]], [a["bbox"] for a in data["annotations"]], "info" in data


@pytest.mark.parametrize("name", sorted(COCO_VALID))
def test_coco_valid(tmp_path, name):
    bboxes = [] if name == "no annotations" else [[0, 0, 5.5, 4], [1, 1, 0, 3]]
    check(tmp_path / "gender_men_train.json", COCO_VALID[name], _coco, (["a.png", "b.png"], bboxes, True))


@pytest.mark.parametrize("name", sorted(COCO_BAD))
def test_coco_bad(tmp_path, name):
    content, where, pattern = COCO_BAD[name]
    check(tmp_path / "gender_men_train.json", content, _coco, None, where, pattern)


def test_coco_allow_duplicates(tmp_path, caplog):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(coco(**{"images/1/id": 1, "annotations/1/image_id": 1})))
    with caplog.at_level(logging.WARNING):
        assert len(read_coco_json(path, allow_duplicates=True)["images"]) == 2
    assert "1 repeated image id(s) kept" in caplog.text


def test_the_table_covers_every_format():
    tables = [MANIFEST_VALID, MANIFEST_BAD, PGFDD_VALID, PGFDD_BAD, SPAI_VALID, SPAI_BAD, DFB_VALID, DFB_BAD,
              PROTOCOL_VALID, PROTOCOL_BAD, LABELS_VALID, LABELS_BAD, COCO_VALID, COCO_BAD]
    assert all(tables) and sum(map(len, tables)) >= 180
