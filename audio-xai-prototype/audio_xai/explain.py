"""Per-utterance explanations: frame importance maps (npy + CSV) and figures (waveform, spectrogram, w(t),
prototype similarity per frame)."""
import csv
import logging
from pathlib import Path

import numpy as np
import torch

from .config import stage_dir
from .data.dataset import iter_utterances
from .evaluate import HOP, align, explain_utterance
from .trainer.stage2 import load_frozen_detector, load_xai

log = logging.getLogger(__name__)


def write_map(out: Path, utt: str, w: np.ndarray, sim: np.ndarray, seglab=None, sample_rate: int = 16000) -> None:
    """``maps/<utt>.npy`` (w [T]) and ``maps/<utt>.csv``: frame, start_s, end_s, importance, sim_bonafide,
    sim_spoof and, where 20 ms labels exist, label (1 = bona fide; frames past the labels' end are left blank)."""
    np.save(out / f"{utt}.npy", w.astype(np.float32))
    with open(out / f"{utt}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "start_s", "end_s", "importance", "sim_bonafide", "sim_spoof", "label"])
        for t in range(len(w)):
            label = int(seglab[t]) if seglab is not None and t < len(seglab) else ""
            writer.writerow([t, f"{t * HOP / sample_rate:.3f}", f"{(t + 1) * HOP / sample_rate:.3f}", f"{w[t]:.6f}",
                             f"{sim[t, 1]:.6f}", f"{sim[t, 0]:.6f}", label])


def plot_explanation(path: Path, wave: np.ndarray, w: np.ndarray, sim: np.ndarray, title: str, seglab=None,
                     sample_rate: int = 16000) -> Path:
    """Four stacked panels on one time axis; spoofed 20 ms segments (if known) shaded red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_wave = np.arange(len(wave)) / sample_rate
    t_frame = (np.arange(len(w)) + 0.5) * HOP / sample_rate
    fig, axes = plt.subplots(4, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(t_wave, wave, lw=0.4)
    axes[0].set_ylabel("waveform")
    axes[1].specgram(wave, NFFT=512, Fs=sample_rate, noverlap=384, cmap="magma")
    axes[1].set_ylabel("Hz")
    axes[2].plot(t_frame, w, color="k")
    axes[2].set(ylabel="w(t)", ylim=(-0.02, 1.02))
    axes[3].plot(t_frame, sim[:, 1], label="bona fide prototype")
    axes[3].plot(t_frame, sim[:, 0], label="spoof prototype")
    axes[3].set(ylabel="prototype sim", xlabel="time (s)")
    axes[3].legend(fontsize=7)
    if seglab is not None:
        for t in np.flatnonzero(np.asarray(seglab) == 0):
            for ax in (axes[0], axes[2], axes[3]):
                ax.axvspan(t * HOP / sample_rate, (t + 1) * HOP / sample_rate, color="red", alpha=0.12, lw=0)
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def explain(cfg, split: str | None = None) -> dict:
    """Write maps for every utterance of ``split`` and figures for the first ``explain.n_figures`` spoofs."""
    split = split or cfg.explain.split
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    detector, xai = load_frozen_detector(cfg, device), load_xai(cfg, device=device)
    out = stage_dir(cfg, "explain") / split
    (out / "maps").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    figures, n = [], 0
    for utt, label, wave, seg in iter_utterances(cfg.data, split):
        ex = explain_utterance(detector, xai, torch.from_numpy(wave)[None].to(device), cfg.model.feature_layer)
        w, sim = ex["importance"], ex["similarity"]
        write_map(out / "maps", utt, w, sim, seg, cfg.data.sample_rate)
        if label == 0 and len(figures) < cfg.explain.n_figures:
            shown = align(w, seg)[1] if seg is not None else None
            title = f"{utt} (spoof), bona fide score {float(ex['logits'][1]):.2f}"
            figures.append(plot_explanation(out / "figures" / f"{utt}.png", wave, w, sim, title, shown,
                                            cfg.data.sample_rate))
        n += 1
    log.info("%d importance maps and %d figures written to %s", n, len(figures), out)
    return {"maps": str(out / "maps"), "n_utts": n, "figures": [str(f) for f in figures]}
