"""Gender-split COCO data: reader, transforms, padded batching, and the caption-based split builder."""
