"""The named metric conventions every metric function accepts as ``convention=``.

A convention names whose published numbers a result reproduces. Where a source does not define a metric
differently (AUC, AP, ECE, COCO AP), every convention gives the same value; the threshold rule applies wherever a
threshold is applied (in ECE only to ``top_label``'s predicted label at p = 0.5).

- ``ours`` (the default): interpolated EER, ``score >= threshold``, rates kept for every group that defines them,
  videos with mixed frame labels refused.
- ``deepfakebench``: SCLBD/DeepfakeBench ``training/metrics/utils.py::get_test_metrics``: EER = FPR at the first
  argmin |FNR - FPR| over sklearn's ``roc_curve`` points, ``score > threshold``, videos keyed by the frame path's
  parent folder name and fake only if every frame is.
- ``pgfdd``: Purdue-M2/Fairness-Generalization (PG-FDD, CVPR 2024) ``training/fairness_metrics.py::acc_fairness``:
  DeepfakeBench's EER, ``score >= threshold``, a group without both classes dropped from every gap.
- ``partialspoof``: nii-yamagishilab/PartialSpoof ``metric/`` (UtteranceEER, SegmentEER, RangeEER) and the ASVspoof
  ``compute_eer`` they call: EER = (FRR + FAR) / 2 at the first argmin |FRR - FAR| over every sorted score.
"""
from __future__ import annotations

import numpy as np

DEFAULT_CONVENTION = "ours"
CONVENTIONS = {
    "ours": "this package's definitions (the default)",
    "deepfakebench": "SCLBD/DeepfakeBench training/metrics/utils.py get_test_metrics",
    "pgfdd": "Purdue-M2/Fairness-Generalization (PG-FDD) training/fairness_metrics.py acc_fairness",
    "partialspoof": "nii-yamagishilab/PartialSpoof metric/ UtteranceEER, SegmentEER, RangeEER (ASVspoof compute_eer)",
}
# predict label 1 when the score is strictly above the threshold (">") or at or above it (">=")
THRESHOLD_RULE = {"ours": ">=", "deepfakebench": ">", "pgfdd": ">=", "partialspoof": ">="}


def check_convention(convention: str, metric: str) -> str:
    """Return ``convention`` if it is a known name, else raise a one-line ValueError naming the valid ones."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r} for {metric}; use one of {', '.join(CONVENTIONS)}")
    return convention


def predict_positive(scores: np.ndarray, threshold: float, convention: str) -> np.ndarray:
    """Boolean predictions of label 1 under the convention's threshold rule (see ``THRESHOLD_RULE``)."""
    return scores > threshold if THRESHOLD_RULE[convention] == ">" else scores >= threshold
