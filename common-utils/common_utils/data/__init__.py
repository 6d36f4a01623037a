"""Validated data readers, image/audio loading, a subgroup-balanced batch sampler and an on-disk feature cache."""

from .audio_lists import ProtocolRow, read_asvspoof_protocol, read_partialspoof_labels
from .coco import read_coco_json, validate_coco
from .errors import DataFormatError
from .feature_cache import FeatureCache
from .image_lists import (
    SUBGROUP_NAMES,
    FairnessRow,
    FrameRow,
    ManifestRow,
    SpaiRow,
    read_deepfakebench_json,
    read_manifest,
    read_pgfdd_csv,
    read_spai_csv,
)
from .loading import load_audio, load_image
from .sampler import SubgroupBalancedBatchSampler
from .text import read_json, read_text

__all__ = [
    "DataFormatError",
    "ManifestRow",
    "FairnessRow",
    "SpaiRow",
    "FrameRow",
    "ProtocolRow",
    "SUBGROUP_NAMES",
    "read_manifest",
    "read_pgfdd_csv",
    "read_spai_csv",
    "read_deepfakebench_json",
    "read_asvspoof_protocol",
    "read_partialspoof_labels",
    "read_coco_json",
    "validate_coco",
    "read_json",
    "read_text",
    "load_image",
    "load_audio",
    "SubgroupBalancedBatchSampler",
    "FeatureCache",
]
