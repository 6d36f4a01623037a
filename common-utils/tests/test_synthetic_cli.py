"""The ``python -m common_utils.synthetic`` CLI."""

import json

import pytest
from common_utils import synthetic
from common_utils.synthetic.__main__ import main


def test_single_dataset(tmp_path, capsys):
    assert main(["gender_coco", "--out", str(tmp_path / "coco"), "--n", "8", "--seed", "1"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["dataset"] == "gender_coco" and line["n"] == 8
    assert (tmp_path / "coco" / "annotations" / "captions_val2017.json").is_file()


def test_all_writes_each_dataset_under_its_name(tmp_path, monkeypatch, capsys):
    for name, n in (("ai_images", 9), ("fairness_images", 18), ("partial_spoof_audio", 6), ("gender_coco", 8)):
        monkeypatch.setitem(synthetic.DEMO_SIZES, name, n)
    assert main(["all", "--out", str(tmp_path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["dataset"] for x in lines] == list(synthetic.DATASETS)
    for name in synthetic.DATASETS:
        info = json.loads((tmp_path / name / "synthetic_info.json").read_text())
        assert info["name"] == name and info["n"] == synthetic.DEMO_SIZES[name]


def test_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["all", "--out", str(tmp_path), "--n", "5"])
    with pytest.raises(SystemExit):
        main(["no_such_dataset", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):  # too small for three splits: a usage error, not a traceback
        main(["partial_spoof_audio", "--out", str(tmp_path), "--n", "2"])
    with pytest.raises(ValueError, match="unknown synthetic dataset"):
        synthetic.generate("no_such_dataset", tmp_path)
