"""Fairness-aware deepfake detection on a frozen CLIP: Stage 1 bias adapter, Stage 2 dual adapter."""
