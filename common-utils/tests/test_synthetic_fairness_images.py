"""fairness_images: deterministic; PG-FDD frame CSVs with videos kept within a split; the demographic-only face sets
in their distributed layouts; captions; a naive detector detects, generalises worse to the shifted fakes, and is
measurably unfair across skin tones."""

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from common_utils.data import SUBGROUP_NAMES, load_image, read_pgfdd_csv
from common_utils.metrics import roc_auc
from common_utils.synthetic import fairness_images, radial_log_spectrum
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CSVS = ("realtrain", "faketrain", "realval", "fakeval", "test", "test_shifted")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairness_images")
    fairness_images.generate(root, n=360, seed=0)
    return root


def _read(root: Path, name: str):
    return read_pgfdd_csv(root / "pgfdd" / f"{name}.csv", data_root=root)


def test_deterministic_for_a_seed(tmp_path):
    for sub, seed in (("a", 1), ("b", 1), ("c", 2)):
        fairness_images.generate(tmp_path / sub, n=36, seed=seed)
    files = {sub: {str(p.relative_to(tmp_path / sub)): p.read_bytes() for p in sorted((tmp_path / sub).rglob("*"))
                   if p.is_file()} for sub in "abc"}
    assert files["a"] == files["b"]
    assert files["a"]["pgfdd/test.csv"] != files["c"]["pgfdd/test.csv"]


def test_subgroup_names_match_the_reader():
    assert list(fairness_images.SUBGROUPS) == list(SUBGROUP_NAMES)


def test_frame_csvs_parse_and_videos_stay_in_one_split(dataset):
    rows = {name: _read(dataset, name) for name in CSVS}  # the reader checks intersec_label against the attributes
    assert {r.label for r in rows["realtrain"] + rows["realval"]} == {0}
    assert {r.label for r in rows["faketrain"] + rows["fakeval"]} == {1}
    for name in ("test", "test_shifted"):
        assert {r.label for r in rows[name]} == {0, 1}
    videos = {split: {r.img_path.parent for name in names for r in rows[name]}
              for split, names in (("train", ("realtrain", "faketrain")), ("val", ("realval", "fakeval")),
                                   ("test", ("test",)))}
    assert not videos["train"] & videos["val"] and not videos["train"] & videos["test"]
    frames = Counter(r.img_path.parent for name in CSVS[:5] for r in rows[name])
    assert set(frames.values()) == {fairness_images.FRAMES}
    # a video is one person: one subgroup for all its frames
    assert all(len({r.subgroup for r in rows["test"] if r.img_path.parent == v}) == 1 for v in videos["test"])
    # the shifted test keeps the test reals and swaps the fakes for another process
    test_reals = {r.img_path for r in rows["test"] if r.label == 0}
    assert test_reals == {r.img_path for r in rows["test_shifted"] if r.label == 0}
    assert not {r.img_path for r in rows["test"] if r.label == 1} & {r.img_path for r in rows["test_shifted"]}
    counts = Counter(r.subgroup for name in CSVS[:5] for r in rows[name])
    assert set(counts) == set(range(8)) and max(counts.values()) >= 2.5 * min(counts.values())
    with open(dataset / "lists" / "test_shifted.csv") as f:
        listed = list(csv.DictReader(f))
    assert list(listed[0]) == ["img_path", "label"] and len(listed) == len(rows["test_shifted"])
    for r in rows["test"][:: max(1, len(rows["test"]) // 20)]:
        assert load_image(r.img_path).size == (fairness_images.IMAGE_SIZE,) * 2


def test_demographic_face_sets_in_their_distributed_layouts(dataset):
    faces = dataset / "faces"
    with open(faces / "fairface" / "fairface_label_train.csv") as f:
        fairface = list(csv.DictReader(f))
    assert list(fairface[0]) == ["file", "age", "gender", "race", "service_test"]
    races = {r for group in fairness_images.FAIRFACE_RACES for r in group}
    assert {r["race"] for r in fairface} <= races and {r["gender"] for r in fairface} == {"Male", "Female"}
    assert all((faces / "fairface" / r["file"]).is_file() for r in fairface)
    utk = list((faces / "UTKFace").glob("*"))
    assert utk and all(re.fullmatch(r"\d+_[01]_[0-4]_\d+\.jpg\.chip\.jpg", p.name) for p in utk)
    causal = list((faces / "CausalFace").rglob("*.png"))
    pattern = r"final_picked_(age|lighting|pose|smiling)/seed_\d+/(asian|white|black|indian)_(male|female)_.*\.png"
    assert causal and all(re.fullmatch(pattern, str(p.relative_to(faces / "CausalFace"))) for p in causal)


def test_captions_name_demographics_and_quality_of_training_images_only(dataset):
    with open(dataset / "captions" / "train.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert rows and all((dataset / r["filepath"]).is_file() for r in rows)
    held_out = {str(r.img_path.relative_to(dataset)) for name in ("realval", "fakeval", "test", "test_shifted")
                for r in _read(dataset, name)}
    assert not held_out & {r["filepath"] for r in rows}
    text = " ".join(r["title"] for r in rows)
    for word in ("woman", "man", "asian", "black", "upscaled", "pixelated", "beard"):
        assert word in text, word
    assert "resynth" not in text and not any("fake_shifted" in r["filepath"] for r in rows)


def test_naive_fft_detector_detects_generalises_worse_and_is_unfair(dataset):
    def features(rows):
        return np.stack([radial_log_spectrum(np.asarray(load_image(r.img_path), dtype=np.float32) / 255) for r in rows])

    train = _read(dataset, "realtrain") + _read(dataset, "faketrain")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    clf.fit(features(train), [r.label for r in train])
    auc = {}
    for name in ("test", "test_shifted"):
        rows = _read(dataset, name)
        scores, labels = clf.predict_proba(features(rows))[:, 1], np.array([r.label for r in rows])
        auc[name] = roc_auc(labels, scores)
        if name == "test_shifted":  # darker skin (black subgroups) carries weaker artefacts than lighter (white)
            race = np.array([r.race for r in rows])
            dark, light = race == 2, race == 1
            auc["dark"], auc["light"] = roc_auc(labels[dark], scores[dark]), roc_auc(labels[light], scores[light])
    assert auc["test"] > 0.9 and auc["test_shifted"] < auc["test"], auc
    assert auc["dark"] < auc["light"], auc
