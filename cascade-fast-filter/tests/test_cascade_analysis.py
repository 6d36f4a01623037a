"""Cascade threshold analysis on hand-made cases: direction, leakage, bound, cost arithmetic."""
import numpy as np
import pytest
from cascade_fast_filter.cascade import cascade_point, choose_operating_point, leakage_upper_bound
from cascade_fast_filter.scores import read_score_csv
from cascade_fast_filter.stage1.thresholds import analyze_cascade_thresholds, expected_cost, settled_mask
from common_utils.data import DataFormatError

# P(fake) and labels (1 = fake): two confident reals, one confident fake, one fake that looks real, one unsure.
P_FAKE = np.array([0.01, 0.015, 0.995, 0.02, 0.5])
LABELS = np.array([0, 0, 1, 1, 0])


def test_settles_confident_reals_not_confident_fakes():
    settled = settled_mask(P_FAKE, 0.98)  # P(real) >= 0.98 <=> P(fake) <= 0.02
    assert settled.tolist() == [True, True, False, True, False]
    design = settled_mask(P_FAKE, 0.98, rule="design")  # the design's `probs > t` on P(fake)
    assert design.tolist() == [False, False, True, False, False]


def test_rates_precision_specificity_and_bound():
    r = analyze_cascade_thresholds(P_FAKE, LABELS, [0.98, 0.99], costs={"gflops": (2.0, 10.0), "ms": (1.0, 4.0)})
    a = r["0.98"]
    assert a["n_settled"] == 3 and a["filtration_rate"] == pytest.approx(3 / 5)
    assert a["leakage_rate"] == pytest.approx(1 / 2) and a["false_negatives"] == 1
    assert a["settled_precision"] == pytest.approx(2 / 3)
    assert a["real_specificity"] == pytest.approx(2 / 3)
    assert a["filtration_bound"] == pytest.approx(3 / 5 + 1 / 2 * 2 / 5)
    assert a["expected_cost_gflops"] == pytest.approx(2.0 + (1 - 3 / 5) * 10.0)
    assert a["expected_cost_ms"] == pytest.approx(1.0 + (1 - 3 / 5) * 4.0)
    b = r["0.99"]  # P(fake) <= 0.01: only the first sample
    assert b["n_settled"] == 1 and b["leakage_rate"] == 0.0 and b["settled_precision"] == 1.0
    # the design's rule leaks the confident fake at every threshold
    d = analyze_cascade_thresholds(P_FAKE, LABELS, [0.98], rule="design")["0.98"]
    assert d["leakage_rate"] == pytest.approx(1 / 2) and d["settled_precision"] == 0.0


def test_nothing_settled_gives_none_precision():
    r = analyze_cascade_thresholds(np.array([0.6, 0.9]), np.array([0, 1]), [0.95])["0.95"]
    assert r["filtration_rate"] == 0.0 and r["settled_precision"] is None and r["leakage_rate"] == 0.0


def test_filtration_never_exceeds_class_prior_bound():
    rng = np.random.default_rng(0)
    for real_share in (0.2, 0.5, 0.8):
        labels = (rng.random(2000) > real_share).astype(int)
        p = np.clip(rng.beta(1, 8, 2000) + 0.5 * labels * rng.random(2000), 0, 1)
        for row in analyze_cascade_thresholds(p, labels, [0.5, 0.9, 0.95, 0.98, 0.99]).values():
            assert row["filtration_rate"] <= row["filtration_bound"] + 1e-12
    # at 20% reals and 5% leakage filtration is capped at 24%
    labels = np.array([0] * 20 + [1] * 80)
    p = np.array([0.0] * 20 + [0.0] * 4 + [1.0] * 76)
    row = analyze_cascade_thresholds(p, labels, [0.98])["0.98"]
    assert row["leakage_rate"] == pytest.approx(0.05) and row["filtration_rate"] == pytest.approx(0.24)
    assert row["filtration_bound"] == pytest.approx(0.24)


def test_expected_cost_arithmetic():
    assert expected_cost(2.58, 20.0, 0.3) == pytest.approx(2.58 + 0.7 * 20.0)
    assert expected_cost(2.58, 20.0, 1.0) == pytest.approx(2.58)
    assert expected_cost(2.58, 20.0, 0.0) == pytest.approx(22.58)


def test_videos_weigh_their_frames_in_the_cost():
    """Video-level rows: filtration counts videos, the cost counts the frames a settled video spares stage 2."""
    p, y, frames = np.array([0.01, 0.5, 0.9]), np.array([0, 0, 1]), np.array([8, 1, 1])
    row = analyze_cascade_thresholds(p, y, [0.98], costs={"gflops": (1.0, 10.0)}, weights=frames)["0.98"]
    assert row["filtration_rate"] == pytest.approx(1 / 3) and row["frame_filtration"] == pytest.approx(0.8)
    assert row["expected_cost_gflops"] == pytest.approx(1.0 + 0.2 * 10.0)
    point = cascade_point(p, np.array([0.1, 0.2, 0.8]), y, 0.98, "p_real", {"gflops": (1.0, 10.0)}, weights=frames)
    assert point["avg_cost_gflops"] == pytest.approx(3.0) and point["filtration_rate"] == pytest.approx(1 / 3)


COSTS = {"gflops": (1.0, 10.0), "ms": (0.5, 2.0)}


def test_cascade_point_and_operating_point():
    s2 = np.array([0.2, 0.1, 0.9, 0.8, 0.3])  # a stage 2 that ranks everything right
    p = cascade_point(P_FAKE, s2, LABELS, 0.98, "p_real", COSTS)
    # settled samples keep their stage-1 score, the rest take stage 2's
    assert p["filtration_rate"] == pytest.approx(0.6) and p["leakage_rate"] == pytest.approx(0.5)
    assert p["avg_cost_gflops"] == pytest.approx(1.0 + 0.4 * 10.0) and p["avg_cost_ms"] == pytest.approx(0.5 + 0.8)
    assert p["accuracy"] == pytest.approx(4 / 5)  # the leaked fake is the only error
    strict = cascade_point(P_FAKE, s2, LABELS, 0.99, "p_real", COSTS)
    assert strict["auc"] == 1.0 and strict["leakage_rate"] == 0.0
    assert choose_operating_point([p, strict], max_leakage=0.05) == strict
    assert choose_operating_point([p, strict], max_leakage=0.6) == p
    assert choose_operating_point([p], max_leakage=0.05) is None
    # the AUC floor (stage 2's AUC - max_auc_drop) excludes the cheaper point whose AUC fell
    assert p["auc"] < 1.0
    assert choose_operating_point([p, strict], max_leakage=0.6, min_auc=0.99) == strict


def test_leakage_bound_keeps_the_constraint_with_confidence():
    assert leakage_upper_bound(0, 162, 0.95) == pytest.approx(1 - 0.05 ** (1 / 162))  # k = 0: closed form
    assert leakage_upper_bound(6, 162, 0.0) == pytest.approx(6 / 162) and leakage_upper_bound(3, 0, 0.95) is None
    rng = np.random.default_rng(0)  # coverage: the bound lies above the true rate in >= 95 % of samples
    k = rng.binomial(162, 0.04, size=4000)
    assert np.mean([leakage_upper_bound(int(x), 162, 0.95) >= 0.04 for x in k]) >= 0.95
    # 6 of 162 fakes leaked: 3.7 % meets 5 % as a point estimate, its 95 % upper bound (7.2 %) does not
    cheap = {"n_leaked": 6, "n_fake": 162, "leakage_rate": 6 / 162, "auc": 0.99, "avg_cost_gflops": 1.0}
    safe = {"n_leaked": 0, "n_fake": 162, "leakage_rate": 0.0, "auc": 0.99, "avg_cost_gflops": 2.0}
    assert choose_operating_point([cheap, safe], 0.05) is cheap
    assert choose_operating_point([cheap, safe], 0.05, confidence=0.95) is safe


def test_score_csv_reading_and_errors(tmp_path):
    good = tmp_path / "s2.csv"
    good.write_text("image_path,score,cost_gflops,cost_ms\na.png,0.7,12.0,3.0\nb.png,0.1,12.0,5.0\n")
    scores, cost = read_score_csv(good, tmp_path)
    assert cost == {"gflops": 12.0, "ms": 4.0} and scores[str((tmp_path / "a.png").resolve())] == 0.7
    bare = tmp_path / "bare.csv"
    bare.write_text("image_path,score\na.png,0.7\n")
    assert read_score_csv(bare, tmp_path)[1] == {"gflops": None, "ms": None}
    bad = tmp_path / "bad.csv"
    bad.write_text("image_path,score\na.png,0.7\nb.png,high\n")
    with pytest.raises(DataFormatError, match=r"bad.csv:3"):
        read_score_csv(bad, tmp_path)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("path,prob\na.png,0.7\n")
    with pytest.raises(DataFormatError, match="image_path"):
        read_score_csv(nocol, tmp_path)
