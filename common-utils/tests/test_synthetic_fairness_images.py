"""fairness_images: deterministic, PG-FDD CSVs parse, subgroups are unequal and a naive detector is unfair."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from common_utils.data import SUBGROUP_NAMES, load_image, read_pgfdd_csv
from common_utils.metrics import fairness_metrics, roc_auc
from common_utils.synthetic import fairness_images, radial_log_spectrum
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CSVS = ("realtrain", "faketrain", "realval", "fakeval", "test", "test_shifted")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairness_images")
    fairness_images.generate(root, n=200, seed=0)
    return root


def _read(root: Path, name: str):
    return read_pgfdd_csv(root / "pgfdd" / f"{name}.csv", data_root=root)


def test_deterministic_for_a_seed(tmp_path):
    for sub, seed in (("a", 1), ("b", 1), ("c", 2)):
        fairness_images.generate(tmp_path / sub, n=12, seed=seed)
    files = {sub: {str(p.relative_to(tmp_path / sub)): p.read_bytes() for p in sorted((tmp_path / sub).rglob("*"))
                   if p.is_file()} for sub in "abc"}
    assert files["a"] == files["b"]
    assert files["a"]["pgfdd/test.csv"] != files["c"]["pgfdd/test.csv"]


def test_subgroup_names_match_the_reader():
    assert list(fairness_images.SUBGROUPS) == list(SUBGROUP_NAMES)


def test_csvs_parse_with_consistent_labels_and_subgroups(dataset):
    rows = {name: _read(dataset, name) for name in CSVS}  # the reader checks intersec_label against the attributes
    assert {r.label for r in rows["realtrain"] + rows["realval"]} == {0}
    assert {r.label for r in rows["faketrain"] + rows["fakeval"]} == {1}
    for name in ("test", "test_shifted"):
        assert {r.label for r in rows[name]} == {0, 1}
    # the shifted test keeps the test reals and swaps the fakes for another process
    test_reals = {r.img_path for r in rows["test"] if r.label == 0}
    assert test_reals == {r.img_path for r in rows["test_shifted"] if r.label == 0}
    assert not {r.img_path for r in rows["test"] if r.label == 1} & {r.img_path for r in rows["test_shifted"]}
    everything = [r for name in CSVS for r in rows[name]]
    counts = Counter(r.subgroup for name in CSVS[:5] for r in rows[name])
    assert set(counts) == set(range(8)) and max(counts.values()) >= 2.5 * min(counts.values())
    for r in everything[:: max(1, len(everything) // 40)]:
        assert load_image(r.img_path).size == (fairness_images.IMAGE_SIZE,) * 2


def test_naive_fft_detector_is_measurably_unfair(dataset):
    def features(rows):
        return np.stack([radial_log_spectrum(np.asarray(load_image(r.img_path), dtype=np.float32) / 255) for r in rows])

    train = _read(dataset, "realtrain") + _read(dataset, "faketrain")
    test = _read(dataset, "test")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    clf.fit(features(train), [r.label for r in train])
    scores = clf.predict_proba(features(test))[:, 1]
    labels = np.array([r.label for r in test])
    groups = np.array([r.subgroup for r in test])
    strong = np.array(fairness_images.ARTIFACT_STRENGTH)[groups] >= 0.3
    assert roc_auc(labels, scores) > 0.85  # it is a detector ...
    assert roc_auc(labels[strong], scores[strong]) - roc_auc(labels[~strong], scores[~strong]) > 0.15  # ... but unfair
    metrics = fairness_metrics(labels, scores, groups)
    assert metrics["F_FPR"] > 10 and metrics["auc_gap"] > 0.15
