"""audio_xai: XLSR-Conformer-TCM spoofing detector (Stage 1) and representation-based frame-importance XAI (Stage 2)."""
