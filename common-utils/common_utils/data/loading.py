"""Image and audio loading whose errors name the file."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, UnidentifiedImageError
from scipy.signal import resample_poly

from .errors import DataFormatError
from .text import require_file


def load_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Decode an image fully and convert it to `mode` ("RGB", "L", ...)."""
    path = require_file(path)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise DataFormatError(path, f"cannot decode image ({e})") from e


def load_audio(path: str | Path, sample_rate: int | None = 16000, resample: bool = False) -> np.ndarray:
    """Read an audio file as float32 mono [n_samples] (channels averaged), without amplitude normalisation.

    A file whose rate differs from `sample_rate` is an error naming both rates, unless `resample=True`
    (polyphase resampling, scipy.signal.resample_poly). ``sample_rate=None`` keeps the file's rate.
    """
    path = require_file(path)
    try:
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise DataFormatError(path, f"cannot read audio ({e})") from e
    if wav.shape[0] == 0:
        raise DataFormatError(path, "empty audio (0 samples)")
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if not np.isfinite(wav).all():
        raise DataFormatError(path, "audio contains NaN or Inf samples")
    if sample_rate is not None and sr != sample_rate:
        if not resample:
            raise DataFormatError(path, f"sample rate is {sr} Hz, expected {sample_rate} Hz (pass resample=True)")
        g = gcd(int(sr), int(sample_rate))
        wav = resample_poly(wav, sample_rate // g, sr // g).astype(np.float32)
    return np.ascontiguousarray(wav, dtype=np.float32)
