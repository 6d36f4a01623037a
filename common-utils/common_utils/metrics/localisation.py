"""Spoof localisation metrics of PartialSpoof (nii-yamagishilab/PartialSpoof ``metric/``): segment-level EER at a
resolution, utterance-level EER from frame scores, and the range-based EER (Zhang et al., "Range-Based Equal Error
Rate for Spoof Localization", Interspeech 2023, arXiv 2305.17739).

Inputs are per utterance, as lists (or ``{utt_id: array}`` mappings) of 1-D arrays:

- ``scores[u]``: frame scores, higher = more spoof-like, one per ``score_resolution`` seconds (frame i covers
  ``[i r, (i + 1) r)``);
- ``labels[u]``: 0/1 with **1 = spoof**, one per ``label_resolution`` seconds. PartialSpoof's ``*_seglab_*.npy``
  files (``common_utils.data.read_partialspoof_labels``) hold 1 = bona fide: pass ``1 - seglab``.

A segment is spoof if any label frame inside it is spoof and scores the highest frame score inside it (SegmentEER.py
min-pools bona fide labels and bona fide scores, the same rule seen from the other class). Under ``partialspoof`` the
EER is ASVspoof's ``compute_eer`` with bona fide as the target class, exactly as PartialSpoof orders it.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .binary import _asvspoof_eer, _interpolated_crossing, _two_classes, eer
from .conventions import DEFAULT_CONVENTION, check_convention


def _pairs(first, second, names: tuple[str, str]) -> list[tuple[object, object, object]]:
    """[(utterance name, first[u], second[u])] from two equally long lists or two mappings with the same keys."""
    if isinstance(first, Mapping):
        if not isinstance(second, Mapping) or set(first) != set(second):
            raise ValueError(f"{names[0]} and {names[1]} must be mappings with the same utterance ids")
        return [(utt, first[utt], second[utt]) for utt in first]
    first, second = list(first), list(second)
    if len(first) != len(second):
        raise ValueError(f"{names[0]} has {len(first)} utterances but {names[1]} has {len(second)}")
    return [(u, a, b) for u, (a, b) in enumerate(zip(first, second))]


def _scores(values, utt) -> np.ndarray:
    s = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if s.ndim != 1 or s.size == 0 or not np.isfinite(s).all():
        raise ValueError(f"utterance {utt!r}: scores must be a non-empty 1-D array of finite values")
    return s


def _labels(values, utt) -> np.ndarray:
    y = np.atleast_1d(np.asarray(values))
    if y.ndim != 1 or y.size == 0 or not np.isin(y, (0, 1)).all():
        raise ValueError(f"utterance {utt!r}: labels must be a non-empty 1-D array of 0/1 (1 = spoof)")
    return y.astype(int)


def _ratio(coarse: float, fine: float, what: str) -> int:
    if coarse <= 0 or fine <= 0:
        raise ValueError(f"{what}: resolutions must be positive seconds, got {coarse} and {fine}")
    q = coarse / fine
    k = int(round(q))
    if k < 1 or abs(q - k) > 1e-6 * q:
        raise ValueError(f"{what}: {coarse} s is not a whole multiple of {fine} s")
    return k


def segment_max(values, factor: int) -> np.ndarray:
    """Max over consecutive windows of ``factor`` values [ceil(n / factor)]; the last window holds the remainder."""
    v = np.asarray(values, dtype=np.float64)
    pad = (-v.size) % factor
    return np.concatenate([v, np.full(pad, -np.inf)]).reshape(-1, factor).max(axis=1)


def ranges_from_labels(labels, resolution: float) -> list[tuple[float, float]]:
    """Spoof time ranges [(start, end)] in seconds from a 0/1 array (1 = spoof) at ``resolution`` seconds."""
    y = np.asarray(labels).astype(int).ravel()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], y, [0]])))
    return [(float(a * resolution), float(b * resolution)) for a, b in zip(edges[::2], edges[1::2])]


def _localisation_eer(y: np.ndarray, s: np.ndarray, convention: str) -> tuple[float, float] | tuple[None, None]:
    if not _two_classes(y):
        return None, None
    if convention == "partialspoof":  # bona fide is the target and its score falls as the spoof score rises
        rate, thr = _asvspoof_eer(-s[y == 0], -s[y == 1])
        return rate, -thr
    return eer(y, s, convention=convention)


def segment_eer(scores, labels, resolution: float, *, score_resolution: float = 0.02,
                label_resolution: float = 0.02,
                convention: str = DEFAULT_CONVENTION) -> tuple[float, float] | tuple[None, None]:
    """Point-based segment EER at ``resolution`` seconds, pooled over every segment of every utterance, and its
    threshold (a segment is called spoof when its score is at or above it); ``(None, None)`` without both classes.

    Scores coarser than ``resolution`` are repeated (upsampled: 20 ms from 40 ms repeats each score twice), finer
    ones max-pooled; labels are max-pooled from ``label_resolution`` (which must not be coarser than
    ``resolution``). Resolutions must be whole multiples of each other. An utterance's scores and labels must cover
    the same time to within two frames of the coarser input; the longer is cut to the common number of segments
    (SegmentEER.py drops the excess too). The EER is the convention's ``eer`` on the pooled segments
    (``partialspoof``: ASVspoof ``compute_eer``, bona fide as target).
    """
    check_convention(convention, "segment_eer")
    if resolution < label_resolution:
        raise ValueError(f"labels at {label_resolution} s cannot give {resolution} s segments; pass finer labels")
    label_factor = _ratio(resolution, label_resolution, "resolution vs label_resolution")
    ys, ss = [], []
    for utt, raw_s, raw_y in _pairs(scores, labels, ("scores", "labels")):
        s, y = _scores(raw_s, utt), _labels(raw_y, utt)
        covered_s, covered_y = s.size * score_resolution, y.size * label_resolution
        if abs(covered_s - covered_y) > 2 * max(score_resolution, label_resolution) + 1e-9:
            raise ValueError(f"utterance {utt!r}: scores cover {covered_s:.3f} s but labels {covered_y:.3f} s; "
                             "check score_resolution and label_resolution")
        if resolution >= score_resolution:
            seg_s = segment_max(s, _ratio(resolution, score_resolution, "resolution vs score_resolution"))
        else:
            seg_s = np.repeat(s, _ratio(score_resolution, resolution, "score_resolution vs resolution"))
        seg_y = segment_max(y, label_factor).astype(int)
        n = min(seg_s.size, seg_y.size)
        ss.append(seg_s[:n])
        ys.append(seg_y[:n])
    return _localisation_eer(np.concatenate(ys), np.concatenate(ss), convention)


def utterance_eer(scores, labels, *,
                  convention: str = DEFAULT_CONVENTION) -> tuple[float, float] | tuple[None, None]:
    """Utterance EER from frame (or segment) scores: an utterance scores its highest frame score and is spoof if its
    label (a 0/1 scalar, or any entry of a 0/1 array; 1 = spoof) is 1, as SegmentEER.py's ``get_utteer_by_seg``
    takes the lowest bona fide score and label. A scalar score is used as is. EER as in ``segment_eer``."""
    check_convention(convention, "utterance_eer")
    pairs = _pairs(scores, labels, ("scores", "labels"))
    s = np.array([_scores(raw, utt).max() for utt, raw, _ in pairs])
    y = np.array([_labels(raw, utt).max() for utt, _, raw in pairs], dtype=int)
    return _localisation_eer(y, s, convention)


def _merged_ranges(ranges, duration: float, utt) -> np.ndarray:
    bad = ValueError(f"utterance {utt!r}: spoof ranges must be finite (start, end) pairs with start <= end")
    try:
        spans = np.asarray(list(ranges), dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise bad from e
    spans = spans.reshape(0, 2) if spans.size == 0 else spans
    if spans.ndim != 2 or spans.shape[1] != 2 or not np.isfinite(spans).all() or (spans[:, 1] < spans[:, 0]).any():
        raise bad
    spans = np.clip(spans[np.argsort(spans[:, 0], kind="stable")], 0.0, duration)
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        elif b > a:
            merged.append([a, b])
    return np.asarray(merged, dtype=np.float64).reshape(-1, 2)


def range_eer(scores, spoof_ranges, durations, score_resolution: float = 0.02, *,
              convention: str = DEFAULT_CONVENTION) -> tuple[float, float] | tuple[None, None]:
    """Range-based EER: error rates measured in seconds of time rather than in segments, and its threshold.

    Utterance u lasts ``durations[u]`` seconds, its spoof time is the union of ``spoof_ranges[u]`` (``(start, end)``
    seconds; ``[]`` for a bona fide utterance; cut to ``[0, duration]``) and frame i covers
    ``[i r, (i + 1) r)`` with ``r = score_resolution``; the last frame ends at the duration (as PartialSpoof's
    ``rttm_tool.savepred_as_seg`` writes it), which must lie within two frames of ``n r``. At threshold t the
    frames with score >= t are flagged spoof, and over all utterances

        FPR(t) = bona fide seconds flagged / bona fide seconds,  FNR(t) = spoof seconds not flagged / spoof seconds

    (pyannote's ``DetectionCostFunction`` false alarm and miss rates, which RangeEER.py accumulates). Both change
    only at frame scores, so every distinct score is evaluated exactly:

    - ``ours``: the FPR = FNR crossing, interpolated linearly between the two thresholds around it (as ``eer``);
    - ``partialspoof`` / ``deepfakebench`` / ``pgfdd``: the FPR at the first threshold (from the highest) that
      minimises |FPR - FNR|: the point RangeEER.py's threshold bisection converges to and whose FPR it prints
      (its search to a 1e-5 precision, its results file appended across runs and its final row lookup are not
      reproduced).
    """
    check_convention(convention, "range_eer")
    if score_resolution <= 0:
        raise ValueError(f"score_resolution must be positive seconds, got {score_resolution}")
    if isinstance(scores, Mapping):
        if not isinstance(durations, Mapping) or set(durations) != set(scores):
            raise ValueError("durations and scores must be mappings with the same utterance ids")
    elif isinstance(durations, Mapping) or len(durations := list(durations)) != len(scores := list(scores)):
        raise ValueError("durations must list one duration per utterance of scores")
    all_s, spoof_s, bona_s = [], [], []
    for utt, raw_s, ranges in _pairs(scores, spoof_ranges, ("scores", "spoof_ranges")):
        s = _scores(raw_s, utt)
        duration = float(durations[utt])
        if not duration > 0 or abs(s.size * score_resolution - duration) > 2 * score_resolution + 1e-9:
            raise ValueError(f"utterance {utt!r}: {s.size} frames of {score_resolution} s do not cover its duration "
                             f"{duration} s (to within two frames)")
        spans = _merged_ranges(ranges, duration, utt)
        edges = np.minimum(np.arange(s.size + 1) * score_resolution, duration)
        edges[-1] = duration
        covered = np.clip(edges[:, None] - spans[None, :, 0], 0.0, (spans[:, 1] - spans[:, 0])[None, :]).sum(axis=1)
        spoof = np.clip(np.diff(covered), 0.0, None)
        all_s.append(s)
        spoof_s.append(spoof)
        bona_s.append(np.clip(np.diff(edges) - spoof, 0.0, None))
    s, spoof, bona = np.concatenate(all_s), np.concatenate(spoof_s), np.concatenate(bona_s)
    total_spoof, total_bona = spoof.sum(), bona.sum()
    if total_spoof <= 0 or total_bona <= 0:
        return None, None
    order = np.argsort(-s, kind="stable")
    sorted_s = s[order]
    last_of_tie = np.concatenate([sorted_s[1:] != sorted_s[:-1], [True]])
    thr = np.concatenate([[np.inf], sorted_s[last_of_tie]])
    fpr = np.concatenate([[0.0], np.cumsum(bona[order])[last_of_tie] / total_bona])
    fnr = 1.0 - np.concatenate([[0.0], np.cumsum(spoof[order])[last_of_tie] / total_spoof])
    fpr[-1], fnr[-1] = 1.0, 0.0  # every frame flagged: exact, whatever the rounding of the sums
    if convention == "ours":
        return _interpolated_crossing(fpr, fnr, thr, float(sorted_s[0]))
    k = int(np.argmin(np.abs(fpr - fnr)))
    return float(fpr[k]), float(thr[k])
