import numpy as np
import pytest
from common_utils.metrics import (
    CONVENTIONS,
    average_precision,
    binary_metrics,
    eer,
    roc_auc,
    video_auc,
    video_metrics,
)
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y * rng.uniform(0.2, 2.0)
    m = binary_metrics(y, s, threshold=0.3)
    pred = (s >= 0.3).astype(int)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["ap"] == pytest.approx(average_precision_score(y, s))
    assert m["acc"] == pytest.approx(accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert (m["n"], m["n_pos"], m["n_neg"]) == (300, y.sum(), 300 - y.sum())


@pytest.mark.parametrize("seed", range(5))
def test_eer_is_where_fpr_meets_fnr(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2000)
    s = rng.normal(size=2000) + 1.5 * y
    rate, thr = eer(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    # the EER lies between the closest ROC points on either side of FPR = FNR
    i = np.argmin(np.abs(fpr - (1 - tpr)))
    assert abs(rate - (fpr[i] + 1 - tpr[i]) / 2) < 0.01
    # at the returned threshold the empirical FPR and FNR are both close to the EER
    assert abs(np.mean(s[y == 0] >= thr) - rate) < 0.01
    assert abs(np.mean(s[y == 1] < thr) - rate) < 0.01


def test_eer_hand_case():
    # perfectly separated -> 0; perfectly inverted -> 1
    assert eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    assert eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])[0] == 1.0


def test_single_class_is_undefined_not_zero():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert m["auc"] is None and m["ap"] is None and m["eer"] is None
    assert m["acc"] == pytest.approx(2 / 3)
    assert roc_auc([0, 0], [0.1, 0.2]) is None and average_precision([0, 0], [0.1, 0.2]) is None


def test_video_auc_averages_frames_per_video():
    labels = [0, 0, 1, 1, 1, 0]
    scores = [0.1, 0.9, 0.8, 0.6, 0.7, 0.2]
    videos = ["a", "a", "b", "b", "c", "d"]
    # video means: a=0.5 (0), b=0.7 (1), c=0.7 (1), d=0.2 (0)
    assert video_auc(labels, scores, videos) == pytest.approx(roc_auc_score([0, 1, 1, 0], [0.5, 0.7, 0.7, 0.2]))
    with pytest.raises(ValueError, match="mixes labels"):
        video_auc([0, 1], [0.1, 0.2], ["a", "a"])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="length"):
        binary_metrics([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.1, float("nan")])


# --- conventions --------------------------------------------------------------------------------------------------

# negatives 0.8, 0.5, 0.1; positives 0.9, 0.3. ROC points (threshold: fpr, fnr):
#   inf: 0, 1 | .9: 0, 1/2 | .8: 1/3, 1/2 | .5: 2/3, 1/2 | .3: 2/3, 0 | .1: 1, 0
EER_Y, EER_S = [0, 0, 0, 1, 1], [0.8, 0.5, 0.1, 0.9, 0.3]
EER_CASES = [
    # ours: fpr - fnr goes -1/6 (.8) -> +1/6 (.5): halfway, rate 1/3 + (2/3 - 1/3) / 2 = 1/2, thr .8 + (.5 - .8) / 2
    ("ours", 0.5, 0.65),
    # sklearn drops (1/3, 1/2) (collinear on fnr = 1/2): |fnr - fpr| over inf,.9,.5,.3,.1 = 1, 1/2, 1/6, 2/3, 1
    # -> fpr at .5 = 2/3 (without the drop it would tie with 1/3 at .8 and pick 1/3)
    ("deepfakebench", 2 / 3, 0.5),
    ("pgfdd", 2 / 3, 0.5),
    # ASVspoof, target = label 1: sorted .1n .3t .5n .8n .9t; k=0..5: frr 0,0,.5,.5,.5,1; far 1,2/3,2/3,1/3,0,0
    # |frr - far| = 1, 2/3, 1/6, 1/6, 1/2, 1 -> k=2: (1/2 + 2/3) / 2 = 7/12, threshold = 2nd sorted score .3
    ("partialspoof", 7 / 12, 0.3),
]


@pytest.mark.parametrize("convention, rate, threshold", EER_CASES)
def test_eer_conventions_hand_case(convention, rate, threshold):
    assert eer(EER_Y, EER_S, convention=convention) == pytest.approx((rate, threshold))
    assert binary_metrics(EER_Y, EER_S, convention=convention)["eer"] == pytest.approx(rate)


def reference_deepfakebench_eer(y, s):
    """REFERENCE (DeepfakeBench get_test_metrics, from its description): FPR at the first argmin |FNR - FPR|."""
    fpr, tpr, _ = roc_curve(y, s, pos_label=1)
    return fpr[np.nanargmin(np.abs((1 - tpr) - fpr))]


def reference_asvspoof_eer(target, nontarget):
    """REFERENCE (ASVspoof compute_eer, from its description), by brute force over every cut of the stable sort of
    [targets, non-targets]: reject the first k, FRR = rejected targets, FAR = accepted non-targets."""
    ranked = sorted([(x, 0) for x in target] + [(x, 1) for x in nontarget], key=lambda item: item[0])
    best = None
    for k in range(len(ranked) + 1):
        frr = sum(c == 0 for _, c in ranked[:k]) / len(target)
        far = sum(c == 1 for _, c in ranked[k:]) / len(nontarget)
        if best is None or abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2, ranked[k - 1][0] if k else ranked[0][0] - 0.001)
    return best[1], best[2]


@pytest.mark.parametrize("seed", range(6))
def test_eer_conventions_match_references_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 120
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + y, 1)  # rounding makes ties across classes
    for convention in ("deepfakebench", "pgfdd"):
        assert eer(y, s, convention=convention)[0] == reference_deepfakebench_eer(y, s)
    rate, thr = eer(y, s, convention="partialspoof")
    ref_rate, ref_thr = reference_asvspoof_eer(s[y == 1], s[y == 0])
    assert rate == pytest.approx(ref_rate) and thr == pytest.approx(ref_thr)
    # ours lies between the two nearest points of the ROC curve around FPR = FNR
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    diff = fpr - (1 - tpr)
    i = int(np.searchsorted(diff, 0))
    assert min(fpr[i - 1], 1 - tpr[i]) - 1e-12 <= eer(y, s)[0] <= max(fpr[i], 1 - tpr[i - 1]) + 1e-12


@pytest.mark.parametrize("convention, acc", [("ours", 1.0), ("pgfdd", 1.0), ("partialspoof", 1.0),
                                             ("deepfakebench", 2 / 3)])
def test_threshold_rule_at_the_threshold(convention, acc):
    # the label-1 sample scores exactly 0.5: >= predicts it fake (3/3 right), > predicts it real (2/3 right)
    m = binary_metrics([1, 0, 1], [0.5, 0.2, 0.9], convention=convention)
    assert m["acc"] == pytest.approx(acc) and m["convention"] == convention
    assert m["threshold_rule"] == (">" if convention == "deepfakebench" else ">=")


FRAMES = [  # (path, label, score)
    ("data/FF/real/000/0.png", 0, 0.2), ("data/FF/real/000/1.png", 0, 0.4),
    ("data\\FF\\fake\\001\\0.png", 1, 0.9), ("data\\FF\\fake\\001\\1.png", 1, 0.7),
    ("data/FF/mixed/002/0.png", 1, 0.6), ("data/FF/mixed/002/1.png", 0, 0.1),
    ("data/CDF/real/003/0.png", 0, 0.3),
]


def reference_deepfakebench_video(paths, labels, scores):
    """REFERENCE (DeepfakeBench get_video_metrics, from its description): key = path part before the last (split on
    backslash if present), score = mean of frame scores, label = int(mean of frame labels)."""
    videos = {}
    for p, y, s in zip(paths, labels, scores):
        videos.setdefault((p.split("\\") if "\\" in p else p.split("/"))[-2], []).append((y, s))
    return {k: (int(sum(y for y, _ in v) / len(v)), sum(s for _, s in v) / len(v)) for k, v in videos.items()}


def test_video_metrics_deepfakebench_groups_by_parent_folder():
    paths, labels, scores = map(list, zip(*FRAMES))
    m = video_metrics(labels, scores, paths, convention="deepfakebench")
    # videos 000 (0, .3), 001 (1, .8), 002 mixed -> int(1/2) = 0 with mean .35, 003 (0, .3)
    assert m["videos"] == ["000", "001", "002", "003"]
    assert m["video_labels"] == [0, 1, 0, 0]
    assert m["video_scores"] == pytest.approx([0.3, 0.8, 0.35, 0.3])
    ref = reference_deepfakebench_video(paths, labels, scores)
    assert [ref[k] for k in m["videos"]] == [pytest.approx((y, s)) for y, s in zip(m["video_labels"],
                                                                                      m["video_scores"])]
    # the fake video outscores all three real ones
    assert m["auc"] == 1.0 and m["n"] == 4
    assert video_auc(labels, scores, paths, convention="deepfakebench") == 1.0


def test_video_metrics_ours_refuses_mixed_videos_and_aggregates():
    _, labels, scores = map(list, zip(*FRAMES))
    with pytest.raises(ValueError, match="video '002' mixes labels 0 and 1"):
        video_metrics(labels, scores, ["000", "000", "001", "001", "002", "002", "003"])
    videos = ["a", "a", "b", "b", "c"]
    labels, scores = [0, 0, 1, 1, 0], [0.1, 0.5, 0.4, 0.45, 0.3]
    # mean: a .3, b .425, c .3 -> AUC 1; max: a .5, b .45, c .3 -> b beats c only -> AUC 1/2
    assert video_metrics(labels, scores, videos)["video_scores"] == pytest.approx([0.3, 0.425, 0.3])
    assert video_auc(labels, scores, videos, aggregate="max") == pytest.approx(0.5)
    assert video_auc(labels, scores, videos, aggregate="median") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown video aggregate 'mode'"):
        video_auc(labels, scores, videos, aggregate="mode")
    with pytest.raises(ValueError, match="parent folder"):
        video_auc([0, 1], [0.1, 0.2], ["a", "b"], convention="deepfakebench")


def test_every_convention_name_is_accepted_and_unknown_names_fail():
    y, s = [0, 1, 0, 1], [0.1, 0.8, 0.4, 0.6]
    for convention in CONVENTIONS:
        assert roc_auc(y, s, convention=convention) == 1.0
        assert average_precision(y, s, convention=convention) == 1.0
    for call in (lambda c: roc_auc(y, s, convention=c), lambda c: average_precision(y, s, convention=c),
                 lambda c: eer(y, s, convention=c), lambda c: binary_metrics(y, s, convention=c),
                 lambda c: video_auc(y, s, ["a", "b", "c", "d"], convention=c),
                 lambda c: video_metrics(y, s, ["a", "b", "c", "d"], convention=c)):
        with pytest.raises(ValueError, match="unknown convention 'deepfake_bench'.*use one of ours, deepfakebench"):
            call("deepfake_bench")
