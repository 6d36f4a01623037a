"""Trainers (CLIP pre-training for the demo, Stage 1, Stage 2), evaluation and inference."""
