"""SPAI (any-resolution spectral AI-image detection) with CLIP semantic-spectral fusion."""
