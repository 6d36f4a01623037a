from .fairness_dataset import (
    CachedFeatureDataset,
    FairnessImageDataset,
    cached_dataset,
    clip_transform,
    split_clip_output,
    weights_digest,
)
from .image_lists import FORMATS, NO_LABEL, UNKNOWN, folder_images, read_set, read_sets

__all__ = ["CachedFeatureDataset", "FairnessImageDataset", "FORMATS", "NO_LABEL", "UNKNOWN", "cached_dataset",
           "clip_transform", "folder_images", "read_set", "read_sets", "split_clip_output", "weights_digest"]
