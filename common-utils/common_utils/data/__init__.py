"""Validated data readers, image/audio loading, a subgroup-balanced batch sampler and an on-disk feature cache."""

from .audio_lists import ProtocolRow, read_asvspoof_protocol, read_partialspoof_labels
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
    "load_image",
    "load_audio",
    "SubgroupBalancedBatchSampler",
    "FeatureCache",
]
