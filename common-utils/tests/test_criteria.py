"""criteria.json: targets parsed, pass computed from measured and target, hand-edited passes caught."""
import json

import pytest
from common_utils.criteria import TargetError, check_target, criterion, read_criteria, write_criteria


@pytest.mark.parametrize("target, measured, refs, expected", [
    (">= 0.85", 0.85, {}, True),
    (">= 0.85", 0.849, {}, False),
    ("< 0.05", 0.049, {}, True),
    ("< 0.05", 0.05, {}, False),
    ("> 0", -0.01, {}, False),
    ("> baseline", 0.7, {"baseline": 0.69}, True),
    ("> baseline", 0.7, {"baseline": None}, False),
    ("<= 0.7 * stage2_only", 6.9, {"stage2_only": 10.0}, True),
    ("<= 0.7 * stage2_only", 7.1, {"stage2_only": 10.0}, False),
    ("in (0.05, 0.95)", 0.05, {}, False),
    ("in [0.05, 0.95]", 0.05, {}, True),
    ("in (0.05, 0.95)", 0.7, {}, True),
    (">= 0.5", None, {}, False),
    (">= 0.5", float("nan"), {}, False),
])
def test_targets(target, measured, refs, expected):
    assert check_target(target, measured, refs) is expected


def test_bad_targets_say_what_is_wrong():
    with pytest.raises(TargetError, match="names 'probe', which was not given"):
        check_target("< probe", 0.1, {})
    with pytest.raises(TargetError, match="expected"):
        check_target("about 3", 0.1)


def test_criterion_computes_pass_and_keeps_compared_values(tmp_path):
    c = criterion("subgroup AUC std vs probe", "< probe", 0.03, split="test", n=400, probe=0.05)
    assert c["pass"] is True and c["probe"] == 0.05 and c["n"] == 400
    with pytest.raises(ValueError, match="give a note"):
        criterion("x", "> 0", None, split="test")
    missing = criterion("x", "> 0", None, split="test", note="no positives in the split")
    assert missing["pass"] is False and missing["measured"] is None
    path = write_criteria(tmp_path / "criteria.json", [c, missing])
    assert read_criteria(path) == [c, missing]


def test_a_hand_edited_pass_or_a_duplicate_name_is_refused(tmp_path):
    c = criterion("train loss", "< 0.5", 0.7, split="train")
    with pytest.raises(ValueError, match="duplicate criterion names"):
        write_criteria(tmp_path / "c.json", [c, c])
    (tmp_path / "c.json").write_text(json.dumps([dict(c, **{"pass": True})]))
    with pytest.raises(ValueError, match="pass=True does not follow"):
        read_criteria(tmp_path / "c.json")
