"""Evaluation of frame importance maps: faithfulness (deletion / insertion on the frozen detector), localisation
against PartialSpoof 20 ms labels, the attention-rollout and gradient x input baselines, interpretation statistics.

Conventions: maps are [T] per utterance, high = evidence of spoofing. Detector score = bona fide logit; the
faithfulness curves follow the spoof probability the maps claim to explain, p_spoof = 1 - softmax(logits)[:, 1]
(from the bona fide score). Deletion replaces frames of the SSL features fed to ``LL`` by a baseline (default
``utt_mean``: the utterance's mean frame); ``silence`` zeroes the waveform instead, which is biased towards
bona fide in ASVspoof (silence shortcut) and therefore not the default.
"""
import json
import logging

import numpy as np
import torch
from common_utils.metrics import eer, roc_auc

from .config import stage_dir
from .data.dataset import iter_utterances
from .trainer.stage2 import frame_embeddings, load_frozen_detector, load_xai

log = logging.getLogger(__name__)
HOP = 320  # samples per SSL frame (20 ms at 16 kHz)
BASELINES = ("utt_mean", "zero", "noise", "silence")


def attention_rollout(attns: list[torch.Tensor], n_frames: int) -> torch.Tensor:
    """Rollout (Abnar & Zuidema 2020) of TCM attention [B, H, 1+T+H, 1+T+H] per block -> [B, T].

    Head-averaged maps restricted to [class token, frames] (head tokens are rebuilt in every block), rows
    renormalised, mixed 0.5 A + 0.5 I and multiplied over blocks; the class-token row over the frames is the map.
    """
    n = 1 + n_frames
    eye = torch.eye(n, device=attns[0].device)
    rollout = eye.expand(attns[0].shape[0], n, n)
    for attn in attns:
        a = attn.mean(1)[:, :n, :n]
        a = 0.5 * a / a.sum(-1, keepdim=True) + 0.5 * eye
        rollout = a @ rollout
    return rollout[:, 0, 1:]


def gradient_x_input(detector, ssl_feat: torch.Tensor) -> torch.Tensor:
    """sum_d x * d(logit_spoof - logit_bona)/dx on the SSL features [B, T, D] -> [B, T] (detector untouched)."""
    x = ssl_feat.detach().clone().requires_grad_(True)
    logits, _ = detector.classify(x)
    (grad,) = torch.autograd.grad((logits[:, 0] - logits[:, 1]).sum(), x)
    return (grad * x).sum(-1).detach()


def _spoof_prob(logits: torch.Tensor) -> np.ndarray:
    """1 - p(bona fide) from the detector's two logits."""
    return (1 - logits.float().softmax(-1)[:, 1]).cpu().numpy()


@torch.no_grad()
def deletion_insertion(detector, ssl_feat, importance, baseline: str = "utt_mean", n_steps: int = 10, wave=None,
                       seed: int = 0) -> dict:
    """Curves of p_spoof as the top-k frames (by ``importance`` [T]) are deleted from the
    utterance (``deletion``) or inserted into the baseline (``insertion``), k = 0, T/n, ..., T; AUC on [0, 1].

    ssl_feat [1, T, D]; ``silence`` needs ``wave`` [1, L] and re-runs the whole detector.
    """
    if baseline not in BASELINES:
        raise ValueError(f"unknown deletion baseline {baseline!r}; expected one of {BASELINES}")
    T = ssl_feat.shape[1]
    order = torch.as_tensor(np.argsort(-np.asarray(importance), kind="stable").copy(), device=ssl_feat.device)
    ks = np.round(np.linspace(0, 1, n_steps + 1) * T).astype(int)
    keep = torch.zeros(n_steps + 1, T, dtype=torch.bool, device=ssl_feat.device)  # True = frame removed
    for j, k in enumerate(ks):
        keep[j, order[:k]] = True
    curves = {}
    if baseline == "silence":
        L = wave.shape[-1]
        frame_of_sample = torch.clamp(torch.arange(L, device=wave.device) // HOP, max=T - 1)
        for name, removed in (("deletion", keep), ("insertion", ~keep)):
            waves = wave.expand(n_steps + 1, L) * (~removed[:, frame_of_sample]).float()
            curves[name] = _spoof_prob(detector(waves)[0])
    else:
        x = ssl_feat[0]
        if baseline == "utt_mean":
            base = x.mean(0, keepdim=True).expand_as(x)
        elif baseline == "zero":
            base = torch.zeros_like(x)
        else:
            g = torch.Generator().manual_seed(seed)
            base = x.mean(0) + x.std(0) * torch.randn(x.shape, generator=g).to(x.device)
        deleted = torch.where(keep[..., None], base, x)          # [n+1, T, D]
        inserted = torch.where(keep[..., None], x, base)
        curves["deletion"] = _spoof_prob(detector.classify(deleted)[0])
        curves["insertion"] = _spoof_prob(detector.classify(inserted)[0])
    dx = 1.0 / n_steps
    return {**curves, "deletion_auc": float(np.trapezoid(curves["deletion"], dx=dx)),
            "insertion_auc": float(np.trapezoid(curves["insertion"], dx=dx))}


def align(scores: np.ndarray, seglab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim a frame map and 20 ms segment labels to their common length (the tail mismatch is dropped)."""
    n = min(len(scores), len(seglab))
    return np.asarray(scores)[:n], np.asarray(seglab)[:n]


def localisation(maps: list, seglabs: list) -> dict:
    """Frame-level EER / AUC of maps (high = spoof) against 20 ms labels (1 = bona fide), pooled over frames,
    plus the mean per-utterance AUC over utterances that contain both classes (scale-free across utterances)."""
    scores, targets, per_utt = [], [], []
    for m, s in zip(maps, seglabs):
        m, s = align(m, s)
        spoof = 1 - s.astype(int)
        scores.append(m)
        targets.append(spoof)
        if 0 < spoof.sum() < len(spoof):
            per_utt.append(roc_auc(spoof, m))
    if not scores:
        return {"frame_eer": None, "frame_auc": None, "mean_utt_auc": None, "n_frames": 0, "n_utts": 0}
    y, s = np.concatenate(targets), np.concatenate(scores)
    return {"frame_eer": eer(y, s)[0], "frame_auc": roc_auc(y, s),
            "mean_utt_auc": float(np.mean(per_utt)) if per_utt else None, "n_frames": int(len(y)),
            "n_utts": len(maps)}


def importance_statistics(maps: list, labels: list) -> dict:
    """Total importance sum_t w(t), mean w, temporal spread (std over t) and normalised entropy of w / sum w,
    each as mean and std over the utterances of a class."""
    out = {}
    for name, cls in (("bonafide", 1), ("spoof", 0)):
        ws = [np.asarray(w, dtype=np.float64) for w, y in zip(maps, labels) if y == cls]
        if not ws:
            continue
        q = [w / max(w.sum(), 1e-12) for w in ws]
        stats = {"total": [w.sum() for w in ws], "mean": [w.mean() for w in ws], "spread": [w.std() for w in ws],
                 "entropy": [-(p * np.log(p + 1e-12)).sum() / np.log(max(len(p), 2)) for p in q]}
        out[name] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in stats.items()}
        out[name]["n"] = len(ws)
    return out


def explain_utterance(detector, xai, wave: torch.Tensor, layer="ssl") -> dict:
    """All frame maps for one utterance wave [1, L]: learned importance, similarities, both baselines."""
    with torch.no_grad():
        ssl = detector.ssl_model(wave)
        h = ssl if layer == "ssl" else frame_embeddings(detector, wave, layer)
        logits, attns = detector.classify(ssl)
        w, sim = xai(h)[0], xai.similarity(h)[0]
    return {"ssl": ssl, "logits": logits[0], "importance": w.cpu().numpy(), "similarity": sim.cpu().numpy(),
            "rollout": attention_rollout(attns, ssl.shape[1])[0].cpu().numpy(),
            "grad_x_input": gradient_x_input(detector, ssl)[0].cpu().numpy()}


METHODS = ("importance", "rollout", "grad_x_input")


def evaluate_xai(cfg, split: str | None = None) -> dict:
    """Faithfulness, localisation and statistics for the learned importance and both baselines on ``split``."""
    ev, split = cfg.evaluate, split or cfg.evaluate.split
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    detector, xai = load_frozen_detector(cfg, device), load_xai(cfg, device=device)
    maps = {m: [] for m in METHODS}
    faith = {m: [] for m in METHODS}
    labels, seglabs, scores, utts = [], [], [], []
    for utt, label, wave_np, seg in iter_utterances(cfg.data.root, split, cfg.data.cut, cfg.data.sample_rate):
        wave = torch.from_numpy(wave_np)[None].to(device)
        ex = explain_utterance(detector, xai, wave, cfg.model.feature_layer)
        for m in METHODS:
            maps[m].append(ex[m])
            faith[m].append(deletion_insertion(detector, ex["ssl"], ex[m], ev.deletion_baseline, ev.n_steps, wave,
                                               cfg.seed))
        labels.append(label)
        seglabs.append(seg)
        scores.append(float(ex["logits"][1]))
        utts.append(utt)
    keep = [i for i, s in enumerate(seglabs) if s is not None and (ev.localisation_utts == "all" or labels[i] == 0)]
    results = {"split": split, "n_utts": len(utts), "deletion_baseline": ev.deletion_baseline,
               "detector_eer": eer(labels, scores)[0], "methods": {}}
    for m in METHODS:
        per = faith[m]
        spoof = [f for f, y in zip(per, labels) if y == 0]
        results["methods"][m] = {
            "deletion_auc": float(np.mean([f["deletion_auc"] for f in per])),
            "insertion_auc": float(np.mean([f["insertion_auc"] for f in per])),
            "deletion_auc_spoof": float(np.mean([f["deletion_auc"] for f in spoof])) if spoof else None,
            "insertion_auc_spoof": float(np.mean([f["insertion_auc"] for f in spoof])) if spoof else None,
            "deletion_curve": np.mean([f["deletion"] for f in per], 0).tolist(),
            "insertion_curve": np.mean([f["insertion"] for f in per], 0).tolist(),
            "localisation": localisation([maps[m][i] for i in keep], [seglabs[i] for i in keep]),
        }
    results["statistics"] = importance_statistics(maps["importance"], labels)
    out = stage_dir(cfg, "evaluate")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    results["figures"] = [str(plot_curves(results, out / "faithfulness.png"))]
    log.info("evaluation written to %s", out)
    return results


def plot_curves(results: dict, path):
    """Mean deletion and insertion curves of every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for m, r in results["methods"].items():
            curve = r[f"{kind}_curve"]
            ax.plot(np.linspace(0, 1, len(curve)), curve, label=f"{m} (AUC {r[f'{kind}_auc']:.3f})")
        ax.set(title=f"{kind} ({results['deletion_baseline']} baseline)", xlabel="fraction of frames",
               ylabel="p_spoof (1 - p_bona)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
