"""RawBoost data augmentation (Tak et al., ICASSP 2022), written from the paper's description.

Algorithms (tcm_add ``--algo`` numbering): 1 linear and non-linear convolutive noise (LnL), 2 impulsive
signal-dependent noise (ISD), 3 stationary signal-independent additive noise (SSI), 4 = 1+2+3 in series,
5 = 1+2, 6 = 1+3, 7 = 2+3, 8 = 1 and 2 applied in parallel and averaged. 0 = off.
All randomness comes from the ``np.random.Generator`` passed in, so an epoch is reproducible.
"""
import numpy as np
from scipy import signal


def _norm(x: np.ndarray, always: bool) -> np.ndarray:
    peak = np.abs(x).max()
    return x / peak if peak > 0 and (always or peak > 1) else x


def notch_filter_bank(rng, fs=16000, n_bands=5, min_f=20.0, max_f=8000.0, min_bw=100.0, max_bw=1000.0,
                      min_coeff=10, max_coeff=100, min_g=0.0, max_g=0.0) -> np.ndarray:
    """FIR coefficients: cascade of ``n_bands`` random band-pass FIRs, normalised to a random peak gain (dB)."""
    b = np.ones(1)
    for _ in range(n_bands):
        fc = rng.uniform(min_f, max_f)
        bw = rng.uniform(min_bw, max_bw)
        taps = int(rng.integers(min_coeff, max_coeff + 1)) | 1  # odd length (type I FIR)
        lo, hi = max(fc - bw / 2, 1e-3), min(fc + bw / 2, fs / 2 - 1e-3)
        if hi <= lo:
            continue
        b = np.convolve(signal.firwin(taps, [lo, hi], pass_zero=False, window="hamming", fs=fs), b)
    gain_db = rng.uniform(min_g, max_g)
    _, h = signal.freqz(b, 1, fs=fs)
    return 10 ** (gain_db / 20) * b / np.abs(h).max()


def lnl_convolutive(x, rng, fs=16000, n_f=5, min_bias=5.0, max_bias=20.0, **band):
    """LnL: sum_j FIR_j(x^j), j = 1..n_f; higher orders get their gain lowered by a random bias (dB)."""
    y = np.zeros_like(x, dtype=np.float64)
    min_g, max_g = band.pop("min_g", 0.0), band.pop("max_g", 0.0)
    for j in range(n_f):
        if j == 1:  # non-linear orders are attenuated by a bias drawn from [min_bias, max_bias] dB
            min_g, max_g = sorted((min_g - min_bias, max_g - max_bias))
        b = notch_filter_bank(rng, fs, min_g=min_g, max_g=max_g, **band)
        y += signal.lfilter(b, 1, x.astype(np.float64) ** (j + 1))
    return _norm(y, always=False).astype(np.float32)


def isd_additive(x, rng, p_max=10.0, g_sd=2.0):
    """ISD: a random P% (P ~ U[0, p_max]) of samples get x + g_sd * x * (u1 * u2), u ~ U[-1, 1]."""
    y = x.astype(np.float64).copy()
    n = int(len(x) * rng.uniform(0, p_max) / 100)
    idx = rng.permutation(len(x))[:n]
    r = (2 * rng.random(n) - 1) * (2 * rng.random(n) - 1)
    y[idx] += g_sd * y[idx] * r
    return _norm(y, always=False).astype(np.float32)


def ssi_additive(x, rng, fs=16000, snr_min=10.0, snr_max=40.0, **band):
    """SSI: white noise coloured by a random filter bank, added at a random SNR in [snr_min, snr_max] dB."""
    noise = signal.lfilter(notch_filter_bank(rng, fs, **band), 1, rng.normal(0, 1, len(x)))
    noise = _norm(noise, always=True)
    snr = rng.uniform(snr_min, snr_max)
    scale = np.linalg.norm(x) / (np.linalg.norm(noise) + 1e-12) / 10 ** (0.05 * snr)
    return (x + scale * noise).astype(np.float32)


def rawboost(x: np.ndarray, algo: int, rng: np.random.Generator, fs: int = 16000) -> np.ndarray:
    """Apply RawBoost algorithm ``algo`` (0..8) to a float32 waveform [L]."""
    if algo == 0:
        return x
    if algo == 1:
        return lnl_convolutive(x, rng, fs)
    if algo == 2:
        return isd_additive(x, rng)
    if algo == 3:
        return ssi_additive(x, rng, fs)
    if algo == 4:
        return ssi_additive(isd_additive(lnl_convolutive(x, rng, fs), rng), rng, fs)
    if algo == 5:
        return isd_additive(lnl_convolutive(x, rng, fs), rng)
    if algo == 6:
        return ssi_additive(lnl_convolutive(x, rng, fs), rng, fs)
    if algo == 7:
        return ssi_additive(isd_additive(x, rng), rng, fs)
    if algo == 8:
        return _norm(lnl_convolutive(x, rng, fs) + isd_additive(x, rng), always=False).astype(np.float32)
    raise ValueError(f"unknown RawBoost algorithm {algo} (expected 0..8)")
