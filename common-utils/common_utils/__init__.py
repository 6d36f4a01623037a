"""Shared utilities for the media-forensics projects: metrics, plots, data, training mechanics, synthetic data."""
