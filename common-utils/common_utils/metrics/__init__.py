"""Metrics: binary detection, calibration, subgroup fairness and COCO detection AP/AR."""
from .binary import average_precision, binary_metrics, eer, roc_auc, video_auc
from .calibration import ece, reliability_data
from .detection import coco_ap_ar
from .fairness import fairness_metrics

__all__ = [
    "average_precision", "binary_metrics", "coco_ap_ar", "ece", "eer", "fairness_metrics", "reliability_data",
    "roc_auc", "video_auc",
]
