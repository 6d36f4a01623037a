"""Stage 1 of a deepfake-detection cascade: MobileNetV4 fast filter, temperature calibration, cascade analysis."""
