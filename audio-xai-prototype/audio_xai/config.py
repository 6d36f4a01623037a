"""Config schema (every key with its default). One config drives the whole pipeline; each command writes under
``run_dir/<stage>``: ``stage1/`` (detector run, ``avg_5_best.pth``, scores), ``stage2/`` (XAI module, embedding
cache), ``explain/`` and ``evaluate/``. Both training sections share the engine's knob names (``epochs``,
``precision``, ``grad_clip``, ``accum_steps``)."""
from pathlib import Path

from common_utils.train import load_config

from .model.ssl_frontend import XLSR_300M

DEFAULTS = {
    "seed": 0,
    "run_dir": "runs/xai",
    "device": "auto",                   # auto | cpu | cuda
    "data": {
        "root": "data/partial_spoof_audio",
        "layout": "asvspoof2019",       # asvspoof2019 | partialspoof | asvspoof2021_la | asvspoof2021_df | in_the_wild
        "phase": "eval",                # ASVspoof 2021 trials scored: eval | progress | hidden_track | all
        "cut": 66800,                   # 64600 for In-the-Wild (tcm_add)
        "sample_rate": 16000,
        "num_workers": 0,
    },
    "detector": {
        "ssl": dict(XLSR_300M),         # Wav2Vec2 architecture of the front-end (XLS-R 300M)
        "ssl_pretrained": None,         # XLS-R init for Stage 1 (HF safetensors/bin or fairseq dict); null = random
        "emb_size": 144,
        "heads": 4,
        "kernel_size": 31,
        "num_encoders": 4,
    },
    "stage1": {
        "epochs": 75,                   # hard stop; early stopping on dev loss after `patience` epochs without gain
        "patience": 7,
        "batch_size": 20,
        "eval_batch_size": 10,
        "lr": 1.0e-6,
        "lr_schedule": "constant",      # constant (tcm_add) | cosine (to 0 at stage1.epochs, per optimizer step)
        "weight_decay": 1.0e-4,
        "class_weights": [0.1, 0.9],    # (spoof, bona fide)
        "rawboost_algo": 5,             # 5 = LA model (LnL + ISD), 3 = DF model (SSI), 0 = off
        "augment_dev": False,           # tcm_add augments dev too (True reproduces that)
        "n_average": 5,
        "precision": "fp32",            # fp32 | bf16 | fp16
        "grad_clip": 0.0,               # 0 = off
        "accum_steps": 1,
        "score_split": "eval",
    },
    "model": {
        "pretrained_checkpoint": None,  # tcm_add-format detector; null = run_dir/stage1/avg_{stage1.n_average}_best.pth
        "feature_layer": "ssl",         # 'ssl' (XLS-R output fed to LL), 'conformer_in', 'hidden<k>' (hidden_states[k])
        "prototype_mode": "ema",        # ema | fixed | learnable
        "spoof_prototype": "mean",      # ema: class means (the design's); 'importance_weighted': spoof frames by w(t)
        "ema_momentum": 0.99,
        "importance_hidden_dim": 256,
        "temperature": 0.07,
        "similarity": "cosine",         # 'dot' = the design's literal h(t) . p_c on raw frames (saturates at T=0.07)
        "importance_objective": "bonafide_null",  # bonafide_null | weighted_mean | frames (the design's literal form)
        "lambda_bonafide_reg": 0.1,
        "lambda_temporal_smooth": 0.1,
        "lambda_sparsity": 0.01,
    },
    "train": {
        "epochs": 20,
        "batch_size": 24,
        "lr": 1.0e-4,
        "weight_decay": 0.0,
        "precision": "fp32",
        "grad_clip": 1.0,
        "accum_steps": 1,
        "use_cache": True,
        "cache_dir": None,              # null = run_dir/stage2/cache
    },
    "explain": {
        "split": "eval",
        "n_figures": 4,
    },
    "evaluate": {
        "split": "eval",
        "deletion_baseline": "utt_mean",  # embedding space: utt_mean | zero | noise
        "waveform_baseline": "bonafide",  # waveform: bonafide (a bona fide utterance) | noise (matched level) | silence
        "n_steps": 10,
        "n_random": 3,                    # random maps averaged for the random baseline
        "localisation_utts": "spoof",     # spoof | all
        "resolutions": [0.02, 0.04, 0.08, 0.16, 0.32, 0.64],  # PartialSpoof segment-EER resolutions (s)
    },
}


def get_config(path=None, overrides=()):
    """Defaults <- YAML file <- ``key=value`` overrides. Keys whose default is null take any value."""
    return load_config(path, DEFAULTS, overrides)


def stage_dir(cfg, stage: str) -> Path:
    return Path(cfg.run_dir) / stage


def detector_checkpoint(cfg, must_exist: bool = True) -> Path:
    """The tcm_add-format detector Stage 2 freezes: ``model.pretrained_checkpoint`` or Stage 1's average."""
    path = Path(cfg.model.pretrained_checkpoint or stage_dir(cfg, "stage1") / f"avg_{cfg.stage1.n_average}_best.pth")
    if must_exist and not path.is_file():
        raise FileNotFoundError(
            f"detector checkpoint {path} not found: train Stage 1 first (python -m audio_xai train-stage1 with the "
            f"same run_dir) or set model.pretrained_checkpoint=<tcm_add's released avg_5_best.pth>")
    return path
