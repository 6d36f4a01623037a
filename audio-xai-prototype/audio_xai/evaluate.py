"""Evaluation of frame maps: faithfulness on the frozen detector (embedding space and waveform), localisation with
PartialSpoof's metrics, the baselines (attention rollout, gradient x input, random maps), map statistics, and the
frame-probe diagnostic.

Conventions: a map is [T] per utterance (20 ms frames), high = evidence of spoofing. Detector score = bona fide
logit; faithfulness follows the spoof probability the maps claim to explain, p_spoof = 1 - softmax(logits)[:, 1].
Removing the top-k frames of a map (k = 0, T/n, ..., T) should lower p_spoof fast (deletion, lower AUC = more
faithful); restoring them into a baseline should raise it fast (insertion, higher AUC = better). Embedding space:
the SSL frames fed to ``LL`` are replaced by ``evaluate.deletion_baseline`` (``utt_mean``: the utterance's mean
frame). Waveform: the frames' 320 samples are replaced by ``evaluate.waveform_baseline`` (``noise``: Gaussian noise
at each frame's own RMS; ``bonafide``: the same samples of a bona fide utterance of the split, scaled to the
utterance's RMS; ``silence``: zeros, biased towards bona fide in ASVspoof (silence shortcut)) and the whole detector
re-runs.
"""
import json
import logging

import numpy as np
import torch
from common_utils.metrics import eer, range_eer, ranges_from_labels, roc_auc, segment_eer, utterance_eer

from .config import stage_dir
from .data.dataset import SpoofDataset, iter_utterances
from .data.layouts import read_segment_labels
from .trainer.stage2 import EmbeddingSource, frame_embeddings, load_frozen_detector, load_xai

log = logging.getLogger(__name__)
HOP = 320  # samples per SSL frame (20 ms at 16 kHz)
FRAME_S = 0.02
EMBEDDING_BASELINES = ("utt_mean", "zero", "noise")
WAVEFORM_BASELINES = ("noise", "bonafide", "silence")
METHODS = ("importance", "rollout", "grad_x_input", "random")


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


def random_maps(n_frames: int, seed: int, index: int, n_maps: int) -> np.ndarray:
    """``n_maps`` uniform random maps [n_maps, T] for utterance ``index`` (the random baseline)."""
    return np.random.default_rng([seed, 7919, index]).random((n_maps, n_frames))


def _spoof_prob(logits: torch.Tensor) -> np.ndarray:
    """1 - p(bona fide) from the detector's two logits."""
    return (1 - logits.float().softmax(-1)[:, 1]).cpu().numpy()


def removal_masks(importance, n_steps: int) -> torch.Tensor:
    """[n_steps + 1, T] bool: row j removes the round(j T / n) frames ranked highest by ``importance`` [T]."""
    importance = np.asarray(importance)
    T = len(importance)
    order = torch.as_tensor(np.argsort(-importance, kind="stable").copy())
    masks = torch.zeros(n_steps + 1, T, dtype=torch.bool)
    for j, k in enumerate(np.round(np.linspace(0, 1, n_steps + 1) * T).astype(int)):
        masks[j, order[:k]] = True
    return masks


def _curves(p_deleted: np.ndarray, p_inserted: np.ndarray, n_steps: int) -> dict:
    dx = 1.0 / n_steps
    return {"deletion": p_deleted, "insertion": p_inserted,
            "deletion_auc": float(np.trapezoid(p_deleted, dx=dx)),
            "insertion_auc": float(np.trapezoid(p_inserted, dx=dx))}


@torch.no_grad()
def embedding_deletion(detector, ssl_feat, importance, baseline: str = "utt_mean", n_steps: int = 10,
                       seed: int = 0) -> dict:
    """Deletion / insertion curves of p_spoof in the SSL feature space: ssl_feat [1, T, D], importance [T]."""
    if baseline not in EMBEDDING_BASELINES:
        raise ValueError(f"unknown evaluate.deletion_baseline {baseline!r}; expected one of {EMBEDDING_BASELINES}")
    x = ssl_feat[0]
    removed = removal_masks(importance, n_steps).to(x.device)[..., None]
    if baseline == "utt_mean":
        base = x.mean(0, keepdim=True).expand_as(x)
    elif baseline == "zero":
        base = torch.zeros_like(x)
    else:
        g = torch.Generator().manual_seed(seed)
        base = x.mean(0) + x.std(0) * torch.randn(x.shape, generator=g).to(x.device)
    deleted = _spoof_prob(detector.classify(torch.where(removed, base, x))[0])
    inserted = _spoof_prob(detector.classify(torch.where(removed, x, base))[0])
    return _curves(deleted, inserted, n_steps)


def waveform_replacement(wave: np.ndarray, baseline: str, seed: int, index: int, bonafide=None) -> np.ndarray:
    """What replaces the samples of removed frames, [L]: matched-level noise, a bona fide waveform or silence."""
    L = len(wave)
    if baseline == "silence":
        return np.zeros(L, dtype=np.float32)
    if baseline == "noise":
        n = -(-L // HOP)
        frames = np.pad(wave, (0, n * HOP - L)).reshape(n, HOP)
        rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1, keepdims=True))
        noise = np.random.default_rng([seed, 104729, index]).standard_normal((n, HOP)) * rms
        return noise.reshape(-1)[:L].astype(np.float32)
    if baseline == "bonafide":
        if bonafide is None:
            raise ValueError("waveform baseline 'bonafide' needs a bona fide utterance of the split")
        other = np.tile(bonafide, -(-L // len(bonafide)))[:L].astype(np.float64)
        scale = np.sqrt((wave.astype(np.float64) ** 2).mean() / max((other ** 2).mean(), 1e-12))
        return (other * scale).astype(np.float32)
    raise ValueError(f"unknown evaluate.waveform_baseline {baseline!r}; expected one of {WAVEFORM_BASELINES}")


@torch.no_grad()
def waveform_deletion(detector, wave: torch.Tensor, maps: list, replacement: torch.Tensor, n_steps: int = 10,
                      batch_size: int = 16) -> list[dict]:
    """Deletion / insertion curves of p_spoof, one per map [T] of ``maps``, when the removed frames' samples of
    wave [1, L] are replaced by ``replacement`` [L] and the whole detector re-runs (frame t = samples
    [320 t, 320 (t + 1)); the last frame also takes the samples past the final full frame). Inputs shared by several
    rows (the untouched and the fully replaced utterance, equal masks) are scored once."""
    L = wave.shape[-1]
    removed = torch.cat([removal_masks(m, n_steps) for m in maps]).to(wave.device)    # [n_maps (n + 1), T]
    rows = torch.cat([removed, ~removed])                                             # deletion rows, insertion rows
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    frame_of_sample = torch.clamp(torch.arange(L, device=wave.device) // HOP, max=removed.shape[1] - 1)
    p = np.concatenate([_spoof_prob(detector(torch.where(chunk[:, frame_of_sample], replacement, wave))[0])
                        for chunk in unique.split(batch_size)])[inverse.cpu().numpy()]
    deleted, inserted = np.split(p, 2)
    k = n_steps + 1
    return [_curves(deleted[i * k:(i + 1) * k], inserted[i * k:(i + 1) * k], n_steps) for i in range(len(maps))]


def align(scores: np.ndarray, seglab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim a frame map and 20 ms segment labels to their common length (the tail mismatch is dropped)."""
    n = min(len(scores), len(seglab))
    return np.asarray(scores)[:n], np.asarray(seglab)[:n]


def frame_localisation(maps: list, seglabs: list) -> dict:
    """Frame-level EER / AUC of maps (high = spoof) against 20 ms labels (1 = bona fide), pooled over frames, plus the
    mean per-utterance AUC over utterances that contain both classes (scale-free across utterances)."""
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


def partialspoof_metrics(maps: list, seglabs: list, durations: list, resolutions) -> dict:
    """PartialSpoof's localisation metrics of maps over every utterance (bona fide ones have only bona fide
    segments): segment EER at each resolution (a segment scores its highest frame), utterance EER from the same maps
    (an utterance scores its highest frame) and the range-based EER, all with ``convention="partialspoof"``."""
    labels = [1 - np.asarray(s).astype(int) for s in seglabs]           # 1 = spoof
    out = {f"segment_eer_{round(r * 1000)}ms": segment_eer(maps, labels, r, convention="partialspoof")[0]
           for r in resolutions}
    out["utterance_eer"] = utterance_eer(maps, labels, convention="partialspoof")[0]
    ranges = [ranges_from_labels(y, FRAME_S) for y in labels]
    out["range_eer"] = range_eer(maps, ranges, durations, FRAME_S, convention="partialspoof")[0]
    return out


def map_statistics(maps: list, labels: list) -> dict:
    """Per class (mean and std over utterances): total sum_t w(t), mean w, temporal spread (std over t), normalised
    entropy of w / sum w, and roughness = mean |w(t+1) - w(t)| (lower = smoother)."""
    out = {}
    for name, cls in (("bonafide", 1), ("spoof", 0)):
        ws = [np.asarray(w, dtype=np.float64) for w, y in zip(maps, labels) if y == cls]
        if not ws:
            continue
        q = [w / max(w.sum(), 1e-12) for w in ws]
        stats = {"total": [w.sum() for w in ws], "mean": [w.mean() for w in ws], "spread": [w.std() for w in ws],
                 "entropy": [-(p * np.log(p + 1e-12)).sum() / np.log(max(len(p), 2)) for p in q],
                 "roughness": [np.abs(np.diff(w)).mean() if len(w) > 1 else 0.0 for w in ws]}
        out[name] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in stats.items()}
        out[name]["n"] = len(ws)
    return out


def explain_utterance(detector, xai, wave: torch.Tensor, layer="ssl") -> dict:
    """All frame maps for one utterance wave [1, L]: learned importance, similarities, rollout, gradient x input."""
    with torch.no_grad():
        ssl = detector.ssl_model(wave)
        h = ssl if layer == "ssl" else frame_embeddings(detector, wave, layer)
        logits, attns = detector.classify(ssl)
        w, sim = xai(h)[0], xai.similarity(h)[0]
    return {"ssl": ssl, "h": h, "logits": logits[0], "importance": w.cpu().numpy(), "similarity": sim.cpu().numpy(),
            "rollout": attention_rollout(attns, ssl.shape[1])[0].cpu().numpy(),
            "grad_x_input": gradient_x_input(detector, ssl)[0].cpu().numpy()}


def frame_probe(cfg, detector, eval_h: list, eval_seglabs: list, eval_labels: list, device) -> dict:
    """How much frame-level spoof information the frozen h(t) carries: a logistic regression trained on the training
    split's frames with their 20 ms labels, scored by frame AUC on the evaluated split's frames (its spoof utterances,
    as the maps are, and all of them). Needs the training split's segment labels. ``frame_auc_utterance_labels``: the
    same probe trained with the supervision Stage 2 has (every frame labelled with its utterance's class), scored the
    same way: what utterance-level labels can localise linearly in h(t)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds = SpoofDataset(cfg.data, "train")
    seg = read_segment_labels(cfg.data.root, cfg.data.layout, "train")
    if seg is None:
        raise FileNotFoundError(f"--probe needs the training split's 20 ms segment labels under {cfg.data.root} "
                                f"(segment_labels/train_seglab_0.02.npy)")
    source = EmbeddingSource(cfg, detector, ds, device, cfg.train.use_cache)
    X, Y = [], []
    for i, u in enumerate(ds.utterances):
        h, mask = source.get(torch.tensor([i]))
        frames, lab = align(h[0][mask[0]].cpu().numpy(), seg[u.utt_id])
        X.append(frames)
        Y.append(1 - lab.astype(int))
    utt_Y = [np.full(len(y), 1 - u.label) for y, u in zip(Y, ds.utterances)]                 # 1 = spoof utterance
    spoof = [i for i, y in enumerate(eval_labels) if y == 0 and eval_seglabs[i] is not None]
    every = [i for i, s in enumerate(eval_seglabs) if s is not None]
    out = {"n_train_frames": int(sum(len(y) for y in Y)), "layer": str(cfg.model.feature_layer)}
    for name, targets in (("", Y), ("_utterance_labels", utt_Y)):
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(np.concatenate(X), np.concatenate(targets))
        maps = [probe.decision_function(h) for h in eval_h]
        out[f"frame_auc{name}"] = frame_localisation([maps[i] for i in spoof], [eval_seglabs[i] for i in spoof])[
            "frame_auc"]
        if not name:
            out["frame_auc_all_utts"] = frame_localisation([maps[i] for i in every],
                                                           [eval_seglabs[i] for i in every])["frame_auc"]
    return out


def evaluate_xai(cfg, split: str | None = None, probe: bool = False) -> dict:
    """Faithfulness, localisation and statistics of the learned importance and the baselines on ``split``."""
    ev, split = cfg.evaluate, split or cfg.evaluate.split
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    detector, xai = load_frozen_detector(cfg, device), load_xai(cfg, device=device)
    items = list(iter_utterances(cfg.data, split))
    bonafide = [w for _, y, w, _ in items if y == 1]
    maps = {m: [] for m in METHODS}
    faith = {m: [] for m in METHODS}
    wave_faith = {m: [] for m in METHODS}
    labels, seglabs, scores, hs, durations, margins = [], [], [], [], [], []
    for index, (_, label, wave_np, seg) in enumerate(items):
        wave = torch.from_numpy(wave_np)[None].to(device)
        ex = explain_utterance(detector, xai, wave, cfg.model.feature_layer)
        margins.append(ex["similarity"][:, 0] - ex["similarity"][:, 1])   # s(h, p_spoof) - s(h, p_bona) [T]
        rand = random_maps(len(ex["importance"]), cfg.seed, index, ev.n_random)
        ex["random"] = rand[0]
        if label == 0:  # removing spoof evidence is defined on spoofed utterances (never replaced by themselves)
            replacement = torch.from_numpy(waveform_replacement(
                wave_np, ev.waveform_baseline, cfg.seed, index,
                bonafide[index % len(bonafide)] if bonafide else None)).to(device)
        draws_of = {m: rand if m == "random" else [ex[m]] for m in METHODS}
        for m in METHODS:
            maps[m].append(ex[m])
            faith[m].append(_mean_curves([embedding_deletion(detector, ex["ssl"], d, ev.deletion_baseline,
                                                             ev.n_steps, cfg.seed) for d in draws_of[m]]))
        if label == 0:
            curves = iter(waveform_deletion(detector, wave, [d for m in METHODS for d in draws_of[m]], replacement,
                                            ev.n_steps))
            for m in METHODS:
                wave_faith[m].append(_mean_curves([next(curves) for _ in draws_of[m]]))
        labels.append(label)
        seglabs.append(seg)
        scores.append(float(ex["logits"][1]))
        hs.append(ex["h"][0].cpu().numpy())
        durations.append(len(wave_np) / cfg.data.sample_rate)
    results = {"split": split, "layout": cfg.data.layout, "n_utts": len(items), "n_spoof": labels.count(0),
               "deletion_baseline": ev.deletion_baseline, "waveform_baseline": ev.waveform_baseline,
               "detector_eer": eer(labels, scores)[0], "methods": {}}
    with_labels = [i for i, s in enumerate(seglabs) if s is not None]
    keep = [i for i in with_labels if ev.localisation_utts == "all" or labels[i] == 0]
    for m in METHODS:
        per, spoof = faith[m], [f for f, y in zip(faith[m], labels) if y == 0]
        r = {"deletion_auc": _mean_of(per, "deletion_auc"), "insertion_auc": _mean_of(per, "insertion_auc"),
             "deletion_auc_spoof": _mean_of(spoof, "deletion_auc"),
             "insertion_auc_spoof": _mean_of(spoof, "insertion_auc"),
             "waveform_deletion_auc": _mean_of(wave_faith[m], "deletion_auc"),
             "waveform_insertion_auc": _mean_of(wave_faith[m], "insertion_auc"),
             "deletion_curve": np.mean([f["deletion"] for f in per], 0).tolist(),
             "insertion_curve": np.mean([f["insertion"] for f in per], 0).tolist(),
             "waveform_deletion_curve": (np.mean([f["deletion"] for f in wave_faith[m]], 0).tolist()
                                         if wave_faith[m] else None),
             "localisation": frame_localisation([maps[m][i] for i in keep], [seglabs[i] for i in keep])}
        if with_labels:
            r["partialspoof"] = partialspoof_metrics([maps[m][i] for i in with_labels],
                                                     [seglabs[i] for i in with_labels],
                                                     [durations[i] for i in with_labels], ev.resolutions)
        results["methods"][m] = r
    results["statistics"] = map_statistics(maps["importance"], labels)
    # what w(t) is trained towards: frames closer to the spoof prototype than to the bona fide one
    results["prototype_margin_localisation"] = frame_localisation([margins[i] for i in keep],
                                                                  [seglabs[i] for i in keep])
    if probe:
        results["probe"] = frame_probe(cfg, detector, hs, seglabs, labels, device)
    out = stage_dir(cfg, "evaluate")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    results["figures"] = [str(plot_curves(results, out / "faithfulness.png"))]
    log.info("evaluation written to %s", out)
    return results


def _mean_curves(curves: list[dict]) -> dict:
    """Average of curves (and their AUCs) over draws."""
    return {k: np.mean([c[k] for c in curves], 0) for k in curves[0]}


def _mean_of(rows: list[dict], key: str):
    return float(np.mean([r[key] for r in rows])) if rows else None


def plot_curves(results: dict, path):
    """Mean deletion and insertion curves (embedding space) and waveform deletion curves of every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    panels = (("deletion_curve", "deletion_auc", f"deletion ({results['deletion_baseline']}, SSL features)"),
              ("insertion_curve", "insertion_auc", f"insertion ({results['deletion_baseline']}, SSL features)"),
              ("waveform_deletion_curve", "waveform_deletion_auc",
               f"waveform deletion ({results['waveform_baseline']}), spoof utts"))
    for ax, (curve_key, auc_key, title) in zip(axes, panels):
        for m, r in results["methods"].items():
            if r[curve_key] is not None:
                curve = r[curve_key]
                ax.plot(np.linspace(0, 1, len(curve)), curve, label=f"{m} (AUC {r[auc_key]:.3f})")
        ax.set(title=title, xlabel="fraction of frames", ylabel="p_spoof (1 - p_bona)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
