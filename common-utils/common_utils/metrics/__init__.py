"""Metrics: binary detection, video level, calibration, subgroup fairness, spoof localisation, COCO AP/AR.

Every function takes ``convention=`` naming whose published numbers it reproduces (``CONVENTIONS``; default
``"ours"``): see ``conventions.py`` and each docstring.
"""
from .binary import average_precision, binary_metrics, eer, roc_auc, video_auc, video_metrics
from .calibration import ece, reliability_data
from .conventions import CONVENTIONS, DEFAULT_CONVENTION, THRESHOLD_RULE
from .detection import coco_ap_ar
from .fairness import fairness_metrics, fairness_report
from .localisation import range_eer, ranges_from_labels, segment_eer, segment_max, utterance_eer

__all__ = [
    "CONVENTIONS", "DEFAULT_CONVENTION", "THRESHOLD_RULE", "average_precision", "binary_metrics", "coco_ap_ar", "ece",
    "eer", "fairness_metrics", "fairness_report", "range_eer", "ranges_from_labels", "reliability_data", "roc_auc",
    "segment_eer", "segment_max", "utterance_eer", "video_auc", "video_metrics",
]
