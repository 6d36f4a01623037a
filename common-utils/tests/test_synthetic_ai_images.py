"""ai_images: deterministic, parses through the readers, and its fakes carry a learnable spectral fingerprint."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from common_utils.data import load_image, read_manifest, read_spai_csv
from common_utils.metrics import roc_auc
from common_utils.synthetic import FAKE_PROCESSES, ai_images, radial_log_spectrum
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ai_images")
    ai_images.generate(root, n=60, seed=0)
    return root


def test_deterministic_for_a_seed(tmp_path):
    ai_images.generate(tmp_path / "a", n=9, seed=3)
    ai_images.generate(tmp_path / "b", n=9, seed=3)
    ai_images.generate(tmp_path / "c", n=9, seed=4)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 9 + 9 + 3 + len(FAKE_PROCESSES) + 2  # reals, fakes, manifests, SPAI CSVs, info
    assert a == b
    assert a.keys() == c.keys() and a["images/real/real_00000.png"] != c["images/real/real_00000.png"]


def test_too_small_n_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="n >= 9"):
        ai_images.generate(tmp_path, n=5)


def test_csvs_parse_and_follow_the_layout(dataset):
    train = read_spai_csv(dataset / "spai" / "train.csv", root=dataset)
    assert {r.split for r in train} == {"train", "val"}
    assert Counter(r.label for r in train) == {0: 42, 1: 42}
    test_reals = None
    for name in FAKE_PROCESSES:
        rows = read_spai_csv(dataset / "spai" / f"test_{name}.csv", root=dataset)
        assert {r.split for r in rows} == {"test"}
        fakes = {r.image.parent.name for r in rows if r.label == 1}
        assert fakes == {name}
        reals = sorted(str(r.image) for r in rows if r.label == 0)
        assert reals and (test_reals is None or reals == test_reals)
        test_reals = reals
    sizes = set()
    for split in ("train", "val", "test"):
        rows = read_manifest(dataset / "manifests" / f"{split}_manifest.csv", data_root=dataset)
        assert {r.split for r in rows} == {split}
        for name in FAKE_PROCESSES:  # every generator dataset mixes both classes
            assert {r.label for r in rows if r.dataset == name} == {0, 1}
        for r in rows:
            img = load_image(r.image_path)
            assert (r.label == 0) == (r.image_path.parent.name == "real")
            sizes.add(img.size)
    assert len(sizes) >= 4 and min(min(s) for s in sizes) >= 96 and max(max(s) for s in sizes) <= 320


def _features(rows, attr):
    images = (np.asarray(load_image(getattr(r, attr)), dtype=np.float32) / 255 for r in rows)
    return np.stack([radial_log_spectrum(img) for img in images])


def test_fft_logistic_regression_separates_real_from_fake(dataset):
    train = read_manifest(dataset / "manifests" / "train_manifest.csv", data_root=dataset)
    test = read_manifest(dataset / "manifests" / "test_manifest.csv", data_root=dataset)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(_features(train, "image_path"), [r.label for r in train])
    scores = clf.predict_proba(_features(test, "image_path"))[:, 1]
    labels = np.array([r.label for r in test])
    assert roc_auc(labels, scores) > 0.9
    chance = roc_auc(labels, np.random.default_rng(0).permutation(scores))
    assert chance < 0.8  # the features, not the evaluation, make the separation
