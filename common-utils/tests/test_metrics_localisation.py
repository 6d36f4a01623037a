import numpy as np
import pytest
from common_utils.metrics import (
    CONVENTIONS,
    eer,
    range_eer,
    ranges_from_labels,
    segment_eer,
    segment_max,
    utterance_eer,
)

# two utterances at 20 ms, labels 1 = spoof
SCORES = [np.array([0.1, 0.9, 0.8, 0.2]), np.array([0.3, 0.4, 0.7, 0.6, 0.05])]
LABELS = [np.array([0, 1, 1, 0]), np.array([0, 0, 0, 1, 0])]
# pooled 20 ms segments: spoof .9 .8 .6; bona fide .1 .2 .3 .4 .7 .05
# (threshold: fpr, fnr) descending: inf 0,1 | .9 0,2/3 | .8 0,1/3 | .7 1/6,1/3 | .6 1/6,0 | ...
SEGMENT_CASES = [
    # ours: fpr - fnr goes -1/6 (.7) -> 1/6 (.6): halfway, rate 1/6, threshold .65
    ("ours", 0.02, 1 / 6, 0.65),
    # sklearn keeps inf, .9, .8, .7, .6, .05: |fnr - fpr| = 1, 2/3, 1/3, 1/6, 1/6, 1 -> fpr 1/6; of the tied
    # thresholds .7 and .6 the float rounding of 1 - 2/3 makes .6 the argmin (upstream's same arithmetic agrees)
    ("deepfakebench", 0.02, 1 / 6, 0.6),
    # bona fide is the target, scores negated: sorted -.9n -.8n -.7t -.6n -.4t ...; k=0..4: frr 0,0,0,1/6,1/6;
    # far 1,2/3,1/3,1/3,0 -> first min |frr - far| = 1/6 at k=3: (1/6 + 1/3) / 2 = 1/4, threshold -(-.7)
    ("partialspoof", 0.02, 1 / 4, 0.7),
    # 40 ms: utterance 1 -> scores [max(.1,.9), max(.8,.2)] = [.9,.8], labels [1,1];
    # utterance 2 -> [.4, .7, .05 (the 1-frame tail)], labels [0, 1, 0]: spoof .9 .8 .7 > bona fide .4 .05
    ("ours", 0.04, 0.0, 0.7),
    # k=3 of -.9n -.8n -.7n -.4t -.05t: frr 0, far 0 -> 0 at threshold .7
    ("partialspoof", 0.04, 0.0, 0.7),
]


@pytest.mark.parametrize("convention, resolution, rate, threshold", SEGMENT_CASES)
def test_segment_eer_hand_cases(convention, resolution, rate, threshold):
    assert segment_eer(SCORES, LABELS, resolution, convention=convention) == pytest.approx((rate, threshold))


def test_segment_pooling_and_ranges_hand_case():
    assert segment_max([0.1, 0.9, 0.8, 0.2, 0.5], 2).tolist() == [0.9, 0.8, 0.5]
    assert segment_max([0, 0, 1], 4).tolist() == [1]  # shorter than one window: one segment
    spans = ranges_from_labels([0, 1, 1, 0, 1], 0.02)
    assert len(spans) == 2 and np.ravel(spans) == pytest.approx([0.02, 0.06, 0.08, 0.10])
    assert ranges_from_labels([0, 0], 0.02) == []


def reference_segments(scores, labels, measure, score_res=0.02, label_res=0.02):
    """REFERENCE (PartialSpoof SegmentEER.py, from its description), in the bona fide orientation it uses: bona fide
    score b = -s and bona fide label 1 - y; coarser: min of b and of the label over windows of measure / res frames,
    the last window taking the remainder; finer: each score repeated; then cut to the common length."""
    bona_s, bona_y = [], []
    for s, y in zip(scores, labels):
        b, lab = list(-np.asarray(s)), list(1 - np.asarray(y))
        if measure >= score_res:
            k = round(measure / score_res)
            b = [min(b[i:i + k]) for i in range(0, len(b), k)]
        else:
            b = [v for v in b for _ in range(round(score_res / measure))]
        k = round(measure / label_res)
        lab = [min(lab[i:i + k]) for i in range(0, len(lab), k)]
        n = min(len(b), len(lab))
        bona_s += b[:n]
        bona_y += lab[:n]
    return np.array(bona_y), np.array(bona_s)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("resolution", [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64])
def test_segment_eer_matches_reference_pooling(seed, resolution):
    rng = np.random.default_rng(seed)
    scores, labels = [], []
    for _ in range(12):
        n = int(rng.integers(20, 90))
        y = np.zeros(n, int)
        if rng.uniform() < 0.7:
            a = int(rng.integers(0, n - 5))
            y[a:a + int(rng.integers(1, 20))] = 1
        labels.append(np.repeat(y, 2))  # labels at 10 ms so that every resolution here is reachable
        m = n + int(rng.integers(-1, 2))  # one frame more or less than the labels: cut to the common length
        scores.append(np.round(rng.normal(size=m) + 1.5 * np.r_[y, 0][:m], 1))  # rounded: ties across classes
    bona_y, bona_s = reference_segments(scores, labels, resolution, label_res=0.01)
    # partialspoof: ASVspoof EER with bona fide (label 1 here) as the target, on its own scores
    rate, thr = segment_eer(scores, labels, resolution, label_resolution=0.01, convention="partialspoof")
    ref_rate, ref_thr = eer(bona_y, bona_s, convention="partialspoof")
    assert rate == pytest.approx(ref_rate) and thr == pytest.approx(-ref_thr)
    for convention in ("ours", "deepfakebench"):
        assert segment_eer(scores, labels, resolution, label_resolution=0.01, convention=convention)[0] == \
            pytest.approx(eer(1 - bona_y, -bona_s, convention=convention)[0])


def test_utterance_eer_takes_the_most_spoof_like_frame():
    # utterance scores max: .9 (spoof), .7 (spoof: one spoof segment), .4 (bona fide) -> separated: EER 0
    scores = SCORES + [np.array([0.2, 0.4])]
    labels = LABELS + [np.array([0, 0])]
    for convention in CONVENTIONS:
        assert utterance_eer(scores, labels, convention=convention)[0] == 0.0
    # scalar scores and labels: spoof .9 .7, bona fide .8 .1; at threshold .8: fpr 1/2 = fnr 1/2
    assert utterance_eer([0.9, 0.7, 0.8, 0.1], [1, 1, 0, 0]) == pytest.approx((0.5, 0.8))
    # by utterance id: a (spoof) scores .9 above b (bona fide by its label) .7: EER 0, first reached at .9
    assert utterance_eer({"a": SCORES[0], "b": SCORES[1]}, {"a": 1, "b": 0}) == pytest.approx((0.0, 0.9))


# range EER hand case. Utterance A lasts 80 ms, spoof from 30 to 60 ms, frames at 20 ms:
#   frame 0 [0,20): bona fide 20 ms | 1 [20,40): spoof 10, bona fide 10 | 2 [40,60): spoof 20 | 3 [60,80): bona fide 20
# utterance B lasts 40 ms, bona fide. Totals: spoof 30 ms, bona fide 90 ms.
RANGE_SCORES = [np.array([0.1, 0.9, 0.5, 0.55]), np.array([0.7, 0.6])]
RANGE_SPANS = [[(0.03, 0.06)], []]
RANGE_DURATIONS = [0.08, 0.04]
# (threshold: fpr, fnr): inf 0,1 | .9 1/9,2/3 | .7 3/9,2/3 | .6 5/9,2/3 | .55 7/9,2/3 | .5 7/9,0 | .1 1,0
RANGE_CASES = [
    # ours: fpr - fnr goes -1/9 (.6) -> 1/9 (.55): halfway, fpr 5/9 + 1/9 = 2/3, threshold .575
    ("ours", 2 / 3, 0.575),
    # first min |fpr - fnr| = 1/9 at .6 (tied with .55): its FPR 5/9
    ("partialspoof", 5 / 9, 0.6),
    ("pgfdd", 5 / 9, 0.6),
]


@pytest.mark.parametrize("convention, rate, threshold", RANGE_CASES)
def test_range_eer_hand_case(convention, rate, threshold):
    result = range_eer(RANGE_SCORES, RANGE_SPANS, RANGE_DURATIONS, 0.02, convention=convention)
    assert result == pytest.approx((rate, threshold))


def reference_range_rates(scores, spans, durations, resolution, threshold, step=0.001):
    """REFERENCE (range-based EER, from its definition), by sampling time every millisecond: an instant is spoof if
    it lies in a spoof range, flagged if the frame covering it (the last frame reaching the end) scores >= the
    threshold; FPR = flagged bona fide time / bona fide time, FNR = unflagged spoof time / spoof time."""
    fa = miss = bona = spoof = 0
    for s, utt_spans, duration in zip(scores, spans, durations):
        for t in (np.arange(round(duration / step)) + 0.5) * step:
            is_spoof = any(a <= t < b for a, b in utt_spans)
            flagged = s[min(int(t / resolution), len(s) - 1)] >= threshold
            spoof, bona = spoof + is_spoof, bona + (not is_spoof)
            miss += is_spoof and not flagged
            fa += flagged and not is_spoof
    return fa / bona, miss / spoof


def test_range_eer_matches_time_sampling_reference():
    rng = np.random.default_rng(0)
    scores, spans, durations = [], [], []
    for _ in range(5):
        n = int(rng.integers(5, 12))
        durations.append(round(n * 0.04 + float(rng.choice([-0.01, 0.0, 0.015])), 3))  # 40 ms frames, ragged ends
        starts = np.sort(rng.choice(np.arange(0, n * 0.04, 0.005), 2, replace=False))
        spans.append([(float(a), float(a + rng.choice([0.015, 0.03, 0.065]))) for a in starts])
        scores.append(np.round(rng.uniform(size=n), 1))
    ref_points = [reference_range_rates(scores, spans, durations, 0.04, t)
                  for t in [np.inf] + sorted(set(np.concatenate(scores).tolist()), reverse=True)]
    fpr, fnr = np.array(ref_points).T
    k = int(np.argmin(np.abs(fpr - fnr)))
    assert range_eer(scores, spans, durations, 0.04, convention="partialspoof")[0] == pytest.approx(fpr[k], abs=1e-9)
    rate = range_eer(scores, spans, durations, 0.04)[0]
    i = int(np.searchsorted(fpr - fnr, 0))  # ours lies on the segment between the two points around the crossing
    assert min(fpr[i - 1], fnr[i]) - 1e-9 <= rate <= max(fpr[i], fnr[i - 1]) + 1e-9


def test_range_eer_equals_segment_eer_when_ranges_follow_frames():
    rng = np.random.default_rng(1)
    labels = [rng.integers(0, 2, int(n)) for n in rng.integers(10, 30, 6)]
    scores = [rng.normal(size=y.size) + y for y in labels]
    spans = [ranges_from_labels(y, 0.02) for y in labels]
    durations = [y.size * 0.02 for y in labels]
    assert range_eer(scores, spans, durations, 0.02)[0] == pytest.approx(segment_eer(scores, labels, 0.02)[0])


def test_bad_localisation_input_is_rejected():
    with pytest.raises(ValueError, match="not a whole multiple"):
        segment_eer(SCORES, LABELS, 0.03)
    with pytest.raises(ValueError, match="cannot give 0.01 s segments"):
        segment_eer(SCORES, LABELS, 0.01)
    with pytest.raises(ValueError, match="utterance 1: scores cover 0.100 s but labels 0.200 s"):
        segment_eer(SCORES, [LABELS[0], np.zeros(10, int)], 0.02)
    with pytest.raises(ValueError, match="1 = spoof"):
        segment_eer(SCORES, [LABELS[0], LABELS[1] * 2], 0.02)
    with pytest.raises(ValueError, match="2 utterances but labels has 1"):
        segment_eer(SCORES, LABELS[:1], 0.02)
    with pytest.raises(ValueError, match="utterance 0: spoof ranges must be finite"):
        range_eer(RANGE_SCORES, [[(0.06, 0.03)], []], RANGE_DURATIONS)
    with pytest.raises(ValueError, match="utterance 0: spoof ranges must be finite"):
        range_eer(RANGE_SCORES, [[(0.0, 0.01, 0.02), (0.03, 0.04, 0.05)], []], RANGE_DURATIONS)
    with pytest.raises(ValueError, match="utterance 1: 2 frames of 0.02 s do not cover its duration 0.4 s"):
        range_eer(RANGE_SCORES, RANGE_SPANS, [0.08, 0.4])
    with pytest.raises(ValueError, match="unknown convention 'asvspoof' for range_eer"):
        range_eer(RANGE_SCORES, RANGE_SPANS, RANGE_DURATIONS, convention="asvspoof")
    assert range_eer(RANGE_SCORES, [[], []], RANGE_DURATIONS) == (None, None)  # no spoof time at all
