"""Config schema (every key with its default). One config drives the whole pipeline; each command writes
under ``run_dir/<stage>``: ``stage1/`` (detector, avg_5_best.pth, scores), ``stage2/`` (XAI module, cache),
``explain/`` and ``evaluate/``."""
from pathlib import Path

from common_utils.train import load_config

DEFAULTS = {
    "seed": 0,
    "run_dir": "runs/xai",
    "device": None,                     # null = cuda if available
    "precision": "fp32",                # fp32 | bf16 | fp16 (training only; the frozen detector always runs fp32)
    "data": {
        "root": "data/partial_spoof_audio",   # holds LA/ and segment_labels/
        "cut": 66800,                   # 64600 for In-the-Wild
        "sample_rate": 16000,
        "num_workers": 0,
    },
    "detector": {
        "ssl": {"preset": "xlsr_300m", "hidden_size": None, "num_hidden_layers": None, "num_attention_heads": None,
                "intermediate_size": None, "conv_dim": None, "conv_kernel": None, "conv_stride": None,
                "num_conv_pos_embeddings": None, "num_conv_pos_embedding_groups": None},
        "ssl_pretrained": None,         # XLS-R init for Stage 1 (HF safetensors/bin or fairseq dict); null = random
        "emb_size": 144,
        "heads": 4,
        "kernel_size": 31,
        "num_encoders": 4,
    },
    "stage1": {
        "max_epochs": 75,
        "patience": 7,                  # early stopping on dev loss
        "batch_size": 20,
        "eval_batch_size": 10,
        "lr": 1.0e-6,
        "weight_decay": 1.0e-4,
        "class_weights": [0.1, 0.9],    # (spoof, bona fide)
        "rawboost_algo": 5,             # 5 = LA model (LnL + ISD), 3 = DF model (SSI)
        "augment_dev": False,           # tcm_add augments dev too (True reproduces that)
        "n_average": 5,
        "grad_accum": 1,
        "grad_clip": 0.0,               # 0 = off
        "score_split": "eval",
    },
    "model": {
        "name": "xai_stage2",
        "pretrained_checkpoint": None,  # null = run_dir/stage1/avg_{stage1.n_average}_best.pth
        "feature_layer": "ssl",         # 'ssl' (XLS-R output fed to LL), 'conformer_in', or HF hidden_states index
        "prototype_mode": "ema",        # ema | fixed | learnable
        "ema_momentum": 0.99,
        "importance_hidden_dim": 256,
        "temperature": 0.07,
        "similarity": "cosine",         # 'dot' = the design's literal h(t) . p_c on raw frames (saturates at T=0.07)
        "lambda_bonafide_reg": 0.1,
        "lambda_temporal_smooth": 0.1,
        "lambda_sparsity": 0.01,
        "contrastive_norm": "weighted_mean",  # 'frames' = the design's literal sum_t w(t) l_t / T
    },
    "train": {
        "epochs": 20,
        "batch_size": 24,
        "lr": 1.0e-4,
        "weight_decay": 0.0,
        "grad_accum": 1,
        "grad_clip": 1.0,
        "use_cache": True,
        "cache_dir": None,              # null = run_dir/stage2/cache
    },
    "explain": {
        "split": "eval",
        "n_figures": 4,
    },
    "evaluate": {
        "split": "eval",
        "deletion_baseline": "utt_mean",  # utt_mean | zero | noise | silence (silence = zeroed waveform; biased)
        "n_steps": 10,
        "localisation_utts": "spoof",     # spoof | all
    },
}


NULLABLE = ("detector.ssl.preset",)  # keys whose non-null default may be set to null


def get_config(path=None, overrides=()):
    return load_config(path, DEFAULTS, overrides, nullable=NULLABLE)


def stage_dir(cfg, stage: str) -> Path:
    return Path(cfg.run_dir) / stage


def detector_checkpoint(cfg) -> Path:
    return Path(cfg.model.pretrained_checkpoint or stage_dir(cfg, "stage1") / f"avg_{cfg.stage1.n_average}_best.pth")
