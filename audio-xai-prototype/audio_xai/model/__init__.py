"""Detector (ssl_frontend, conformertcm) and the Stage 2 XAI module (xai_stage2)."""
