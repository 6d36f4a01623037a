from .fairness_dataset import (
                               CachedFeatureDataset,
                               FairnessImageDataset,
                               cached_dataset,
                               clip_transform,
                               read_rows,
                               split_clip_output,
                               weights_digest,
)

__all__ = ["CachedFeatureDataset", "FairnessImageDataset", "cached_dataset", "clip_transform", "read_rows",
           "split_clip_output", "weights_digest"]
