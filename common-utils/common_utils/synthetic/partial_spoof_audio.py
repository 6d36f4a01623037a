"""``partial_spoof_audio``: speech-like bona fide audio and partially vocoded spoofs (ASVspoof 2019 LA + PartialSpoof).

Bona fide utterances (16 kHz, 1.0-1.6 s, a whole number of 20 ms frames) are syllable sequences: a harmonic source
following a speaker-specific pitch contour, shaped by three formant resonators per vowel, optional fricative noise
bursts, short gaps and longer pauses, over a faint noise floor. A spoofed utterance is a bona fide one in which 1-3
frame-aligned segments are replaced by a vocoder-like re-synthesis of the same signal: the STFT magnitude is
smoothed over frequency and band-limited, the phase is rebuilt with a few Griffin-Lim iterations, and the output
carries the spectral images of a neural vocoder's last 2x upsampling layer (the 0-4 kHz content mirrored into
4-8 kHz, as zero insertion with a short interpolation kernel leaves it). Attack ``A01``: 16 iterations, 7 kHz band
limit, nearest-neighbour upsampling; ``A02``: 32 iterations, 6 kHz band limit, stronger smoothing, linear
interpolation; images at half amplitude in both.

Layout under ``out``::

    LA/ASVspoof2019_LA_{train,dev,eval}/flac/<utt>.flac            (PCM_16 FLAC, mono, 16 kHz)
    LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt   "SPK UTT - ATTACK key"
    segment_labels/{train,dev,eval}_seglab_0.02.npy   pickled dict {utt: np.array of '0'/'1' str}, 1 = bona fide
    synthetic_info.json

Bona fide utterances are named ``LA_<T|D|E>_xxxxxxx`` (attack ``-``), spoofs ``CON_<T|D|E>_xxxxxxx``. ``n`` counts
all utterances (splits 60/15/25 %, half of each split spoofed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import ndimage, signal

from .images import split_counts

SAMPLE_RATE = 16000
FRAME = 320  # 20 ms PartialSpoof segment
SPLITS = (("train", "T", "trn"), ("dev", "D", "trl"), ("eval", "E", "trl"))
SPLIT_FRACTIONS = (0.6, 0.15, 0.25)
DEMO_N = 480
MIN_FRAMES, MAX_FRAMES = 50, 80  # utterance length in 20 ms frames (1.0-1.6 s)
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410), (300, 870, 2240),
          (660, 1720, 2410), (490, 1350, 1690))
BANDWIDTHS = (80.0, 100.0, 140.0)
# attack -> (Griffin-Lim iterations, band limit in Hz, magnitude smoothing over frequency in bins, upsampling kernel,
# gain of its spectral images)
ATTACKS = {"A01": (16, 7000.0, 1.5, "nearest", 0.5), "A02": (32, 6000.0, 3.0, "linear", 0.5)}
NOISE_STD = 0.002
N_FFT, HOP = 512, 128


def _resonator(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    a = [1.0, -2.0 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r]
    return signal.lfilter([1.0 - r], a, x)


def _envelope(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    env[:attack] = np.sin(0.5 * np.pi * np.arange(attack) / attack) ** 2
    env[n - release:] = np.cos(0.5 * np.pi * np.arange(release) / release) ** 2
    return env


def _vowel(rng: np.random.Generator, n: int, f0_start: float, formant_scale: float) -> np.ndarray:
    """One voiced vowel ``[n]``: harmonics below 7.6 kHz along a pitch glide, through three formant resonators."""
    f0 = f0_start * (1 + rng.uniform(-0.12, 0.12) * np.linspace(0, 1, n)
                     + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * np.arange(n) / SAMPLE_RATE))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    # sum_k sin(k * phase) / k for k * max(f0) < 7.6 kHz, by the recurrence sin((k+1)p) = 2 cos(p) sin(kp) - sin((k-1)p)
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros(n), np.sin(phase)
    source = cur.copy()
    for k in range(2, int(7600 / f0.max()) + 1):
        prev, cur = cur, two_cos * cur - prev
        source += cur / k
    out = source
    for freq, bw in zip(VOWELS[int(rng.integers(len(VOWELS)))], BANDWIDTHS):
        out = _resonator(out, freq * formant_scale, bw)
    out /= np.abs(out).max() + 1e-9
    return out * _envelope(n, int(0.015 * SAMPLE_RATE), int(0.03 * SAMPLE_RATE)) * rng.uniform(0.5, 1.0)


def _fricative(rng: np.random.Generator, n: int) -> np.ndarray:
    sos = signal.butter(4, [rng.uniform(2000, 3500), 7500], btype="band", fs=SAMPLE_RATE, output="sos")
    noise = signal.sosfilt(sos, rng.normal(size=n))
    return noise / (np.abs(noise).max() + 1e-9) * rng.uniform(0.1, 0.25) * np.hanning(n)


def speech_like(rng: np.random.Generator, n_frames: int, f0_base: float, formant_scale: float) -> np.ndarray:
    """A bona fide utterance ``[n_frames * 320]`` float32 in [-1, 1]."""
    total = n_frames * FRAME
    x = np.zeros(total)
    t = int(rng.uniform(0.05, 0.2) * SAMPLE_RATE)
    while t < total - int(0.15 * SAMPLE_RATE):
        if rng.random() < 0.35:
            n = int(rng.uniform(0.04, 0.09) * SAMPLE_RATE)
            x[t:t + n] += _fricative(rng, n)[: total - t]
            t += n
        n = min(int(rng.uniform(0.09, 0.25) * SAMPLE_RATE), total - t)
        declination = 1.0 - 0.15 * t / total
        x[t:t + n] += _vowel(rng, n, f0_base * declination * rng.uniform(0.92, 1.08), formant_scale)
        t += n + int((rng.uniform(0.15, 0.4) if rng.random() < 0.15 else rng.uniform(0.03, 0.08)) * SAMPLE_RATE)
    x = 0.6 * x / (np.abs(x).max() + 1e-9) + rng.normal(0.0, NOISE_STD, total)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _stft(x: np.ndarray) -> np.ndarray:
    """Hann-window STFT ``[T] -> [frames, N_FFT // 2 + 1]`` (signal zero-padded by N_FFT // 2 on both sides)."""
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2 + (-len(x)) % HOP))
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    return np.fft.rfft(frames * np.hanning(N_FFT), axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of ``_stft``, ``[frames, bins] -> [length]``."""
    window = np.hanning(N_FFT)
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * window
    n_frames = len(frames)
    out = np.zeros((n_frames + N_FFT // HOP - 1) * HOP)
    norm = np.zeros_like(out)
    for j in range(N_FFT // HOP):  # each hop-sized slice of every frame lands on a contiguous run
        out[j * HOP: j * HOP + n_frames * HOP] += frames[:, j * HOP:(j + 1) * HOP].reshape(-1)
        norm[j * HOP: j * HOP + n_frames * HOP] += np.tile(window[j * HOP:(j + 1) * HOP] ** 2, n_frames)
    out /= np.maximum(norm, 1e-8)
    return out[N_FFT // 2: N_FFT // 2 + length]


def upsampling_images(x: np.ndarray, kernel: str) -> np.ndarray:
    """The spectral images a 2x upsampling layer leaves: the 0-4 kHz content of ``x`` ``[T]`` mirrored into 4-8 kHz.

    ``x`` is brought to 8 kHz (FFT low-pass, every other sample) and upsampled back by zero insertion and a short
    interpolation kernel (``nearest`` [1, 1], ``linear`` [0.5, 1, 0.5]); what lies above 4 kHz is the image.
    """
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    half = np.fft.irfft(np.where(freqs < SAMPLE_RATE / 4, spec, 0.0), n=len(x))[::2]
    stuffed = np.zeros(2 * len(half))
    stuffed[::2] = half
    taps = {"nearest": [1.0, 1.0], "linear": [0.5, 1.0, 0.5]}[kernel]
    up = np.convolve(stuffed, taps, mode="same")[: len(x)]
    up_spec = np.fft.rfft(up, n=len(x))
    return np.fft.irfft(np.where(freqs >= SAMPLE_RATE / 4, up_spec, 0.0), n=len(x))


def vocode(rng: np.random.Generator, x: np.ndarray, attack: str) -> np.ndarray:
    """Vocoder-like re-synthesis of ``x`` ``[T]``: smoothed, band-limited STFT magnitude + Griffin-Lim phase, plus the
    spectral images of the vocoder's last 2x upsampling layer (``upsampling_images``) at the attack's level."""
    n_iter, cutoff, smooth, kernel, image_gain = ATTACKS[attack]
    mag = ndimage.gaussian_filter1d(np.abs(_stft(x)), smooth, axis=1)
    mag[:, np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE) > cutoff] = 0.0
    est = mag * np.exp(2j * np.pi * rng.random(mag.shape))
    for _ in range(n_iter):
        rebuilt = _stft(_istft(est, len(x)))
        est = mag * rebuilt / np.maximum(np.abs(rebuilt), 1e-12)
    y = _istft(est, len(x))
    return y + image_gain * upsampling_images(y, kernel)


def _spoof_segments(rng: np.random.Generator, x: np.ndarray) -> list[tuple[int, int]]:
    """1-3 non-overlapping frame ranges ``[start, end)`` that are mostly speech."""
    frame_rms = np.sqrt((x.reshape(-1, FRAME).astype(np.float64) ** 2).mean(axis=1))
    speech = frame_rms > 4 * NOISE_STD
    n_frames = len(frame_rms)
    taken = np.zeros(n_frames, dtype=bool)
    segments, target = [], int(rng.integers(1, 4))
    for _ in range(200):
        if len(segments) == target:
            break
        length = int(rng.integers(8, max(9, min(40, int(0.35 * n_frames)))))
        start = int(rng.integers(0, n_frames - length + 1))
        lo, hi = max(0, start - 2), min(n_frames, start + length + 2)
        if taken[lo:hi].any() or speech[start:start + length].mean() < 0.5:
            continue
        taken[start:start + length] = True
        segments.append((start, start + length))
    if not segments:  # no mostly-speech window found: take the loudest window
        length = min(8, n_frames)
        start = int(np.argmax(np.convolve(frame_rms, np.ones(length), mode="valid")))
        segments.append((start, start + length))
    return sorted(segments)


def splice_vocoded(rng: np.random.Generator, x: np.ndarray, segments: list[tuple[int, int]], attack: str,
                   fade: int = 48) -> np.ndarray:
    """Replace the frame ranges of ``x`` ``[T]`` by their vocoded version (each re-synthesised with N_FFT samples of
    context on both sides); the short cross-fades lie inside the replaced (spoof) frames."""
    out = x.astype(np.float64).copy()
    for start, end in segments:
        a, b = start * FRAME, end * FRAME
        lo, hi = max(0, a - N_FFT), min(len(x), b + N_FFT)
        y = vocode(rng, x[lo:hi].astype(np.float64), attack)[a - lo: b - lo]
        w = np.ones(b - a)
        w[:fade] = np.linspace(0.0, 1.0, fade)
        w[-fade:] = np.linspace(1.0, 0.0, fade)
        out[a:b] = (1 - w) * x[a:b] + w * y
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def split_sizes(n: int) -> list[int]:
    """Utterances per split: ``SPLIT_FRACTIONS`` of ``n``, at least two (a bona fide and a spoof) in each."""
    counts = split_counts(n, SPLIT_FRACTIONS)
    for i in range(len(counts)):
        while counts[i] < 2:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    return counts


def generate(out: str | Path, n: int = DEMO_N, seed: int = 0) -> dict:
    """Write the dataset under ``out`` (``n`` utterances over train/dev/eval). Returns the counts written."""
    out = Path(out)
    if n < 6:
        raise ValueError(f"partial_spoof_audio needs n >= 6 (a bona fide and a spoof per split), got {n}")
    protocol_dir = out / "LA" / "ASVspoof2019_LA_cm_protocols"
    protocol_dir.mkdir(parents=True, exist_ok=True)
    (out / "segment_labels").mkdir(parents=True, exist_ok=True)
    info = {"name": "partial_spoof_audio", "n": n, "seed": seed, "sample_rate": SAMPLE_RATE, "counts": {},
            "labels": "protocol key bonafide|spoof; segment labels '1' = bona fide, '0' = spoof (20 ms)"}
    for s, ((split, letter, ext), count) in enumerate(zip(SPLITS, split_sizes(n))):
        rng = np.random.default_rng([seed, 200 + s])
        n_speakers = int(np.clip(count // 6, 2, 8))
        speakers = [(f"LA_{1000 + 100 * s + k:04d}", rng.uniform(95, 230), rng.uniform(0.9, 1.15))
                    for k in range(n_speakers)]
        is_spoof = rng.permutation(np.arange(count) % 2 == 1)
        flac_dir = out / "LA" / f"ASVspoof2019_LA_{split}" / "flac"
        flac_dir.mkdir(parents=True, exist_ok=True)
        lines, seglabs = [], {}
        for i in range(count):
            urng = np.random.default_rng([seed, 210 + s, i])
            speaker, f0, formant_scale = speakers[i % n_speakers]
            x = speech_like(urng, int(urng.integers(MIN_FRAMES, MAX_FRAMES + 1)), f0, formant_scale)
            labels = np.ones(len(x) // FRAME, dtype=bool)
            if is_spoof[i]:
                attack = "A01" if urng.random() < 0.5 else "A02"
                segments = _spoof_segments(urng, x)
                x = splice_vocoded(urng, x, segments, attack)
                for start, end in segments:
                    labels[start:end] = False
                utt, key = f"CON_{letter}_{i:07d}", "spoof"
            else:
                utt, attack, key = f"LA_{letter}_{i:07d}", "-", "bonafide"
            sf.write(flac_dir / f"{utt}.flac", x, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
            lines.append(f"{speaker} {utt} - {attack} {key}\n")
            seglabs[utt] = np.where(labels, "1", "0")
        (protocol_dir / f"ASVspoof2019.LA.cm.{split}.{ext}.txt").write_text("".join(lines))
        np.save(out / "segment_labels" / f"{split}_seglab_0.02.npy", seglabs, allow_pickle=True)
        info["counts"][split] = {"bonafide": int((~is_spoof).sum()), "spoof": int(is_spoof.sum())}
    (out / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
