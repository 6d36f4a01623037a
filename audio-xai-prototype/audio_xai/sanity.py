"""Model-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

The detector's weights are re-initialised (the initialisation Stage 1 starts from, same seed), written in tcm_add's
format and read back through the released-checkpoint loader; Stage 2 is trained on it with the same seed, data and
settings under ``run_dir/sanity``. An explanation that depends on what the detector learned must change: the check
reports, per method, the mean per-utterance Spearman rank correlation between the maps of the trained and of the
randomised detector (a constant map carries no ranking and counts as 0) and the frame AUC of both.
"""
import json
import logging

import numpy as np
import torch
from common_utils.train import save_checkpoint, seed_everything
from omegaconf import OmegaConf
from scipy.stats import rankdata

from .config import stage_dir
from .data.dataset import iter_utterances
from .evaluate import explain_utterance, frame_localisation
from .model.conformertcm import build_detector, tcm_state_dict
from .trainer.stage2 import load_frozen_detector, load_xai, train_stage2

log = logging.getLogger(__name__)
COMPARED = ("importance", "rollout", "grad_x_input")


def rank_correlation(a, b) -> float:
    """Spearman correlation of two maps [T] (average ranks for ties); 0 when either map is constant."""
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def randomised_config(cfg):
    """``cfg`` with ``run_dir/sanity`` as run directory and its re-initialised detector as the frozen checkpoint."""
    root = stage_dir(cfg, "sanity")
    return OmegaConf.merge(cfg, {"run_dir": str(root),
                                 "model": {"pretrained_checkpoint": str(root / "randomised_detector.pth")}})


def sanity_check(cfg, split: str | None = None) -> dict:
    """Train Stage 2 on the re-initialised detector and compare its maps with the trained pipeline's on ``split``."""
    split = split or cfg.evaluate.split
    rcfg = randomised_config(cfg)
    seed_everything(cfg.seed)
    ckpt = stage_dir(rcfg, "stage2").parent / "randomised_detector.pth"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(tcm_state_dict(build_detector(cfg.detector)), ckpt)
    train_stage2(rcfg, overwrite=True)
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    trained = load_frozen_detector(cfg, device), load_xai(cfg, device=device)
    randomised = load_frozen_detector(rcfg, device), load_xai(rcfg, device=device)
    corr = {m: [] for m in COMPARED}
    maps = {"trained": [], "randomised": []}
    seglabs = []
    for _, label, wave, seg in iter_utterances(cfg.data, split):
        wave = torch.from_numpy(wave)[None].to(device)
        a = explain_utterance(*trained, wave, cfg.model.feature_layer)
        b = explain_utterance(*randomised, wave, cfg.model.feature_layer)
        for m in COMPARED:
            corr[m].append(rank_correlation(a[m], b[m]))
        if label == 0 and seg is not None:
            maps["trained"].append(a["importance"])
            maps["randomised"].append(b["importance"])
            seglabs.append(seg)
    results = {"split": split, "n_utts": len(corr["importance"]),
               "rank_correlation": {m: float(np.mean(v)) for m, v in corr.items()},
               "importance_frame_auc": {k: frame_localisation(v, seglabs)["frame_auc"] for k, v in maps.items()}}
    out = stage_dir(rcfg, "evaluate")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    log.info("model-randomisation check: %s", results)
    return results
