"""The training engine every trainer uses (see common-utils/README.md, "Training engine").

- :class:`OptimStep`: the optimisation step (AMP bf16/fp16 with scaler, accumulation, clipping, non-finite guard).
- :func:`wrap_model`, :func:`unwrap_model`, :func:`adamw`, :func:`build_loader`: device, DDP, channels_last,
  compile, fused AdamW, data loaders with capped persistent workers.
- :class:`RunDir`, :class:`TrainState`, :func:`save_run_state`, :func:`load_run_state`: the run directory and the
  one run-state checkpoint format.
- configs (:func:`load_config`), distributed set-up, seeding, guards and logging helpers.
"""
from .checkpoint import (
    CheckpointWriteError,
    StateDictMismatchError,
    capture_rng_state,
    check_state_dict,
    load_checkpoint,
    load_state_dict_strict,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
)
from .config import REQUIRED, ConfigError, load_config, parse_args_with_overrides, prepare_run_dir
from .distributed import (
    DistContext,
    all_gather_cat,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    cleanup_distributed,
    gather_rng_states,
    init_distributed,
)
from .guards import (
    DivergenceError,
    NonFiniteLossError,
    autocast_context,
    check_finite,
    check_finite_outputs,
    make_grad_scaler,
)
from .metric_logger import MetricLogger, progress
from .run_dir import RunDir, RunDirError
from .run_state import (
    RUN_STATE_KEYS,
    Resumed,
    RunStateError,
    TrainState,
    load_run_state,
    read_run_state,
    save_run_state,
)
from .seed import seed_everything
from .step import OptimStep, step_options
from .wrap import adamw, available_cores, build_loader, resolve_num_workers, unwrap_model, wrap_model

__all__ = [
    "REQUIRED", "RUN_STATE_KEYS", "CheckpointWriteError", "ConfigError", "DistContext", "DivergenceError",
    "MetricLogger", "NonFiniteLossError", "OptimStep", "Resumed", "RunDir", "RunDirError", "RunStateError",
    "StateDictMismatchError", "TrainState", "adamw", "all_gather_cat", "all_gather_objects", "all_reduce_mean",
    "autocast_context", "available_cores", "barrier", "build_loader", "capture_rng_state", "check_finite",
    "check_finite_outputs", "check_state_dict", "cleanup_distributed", "gather_rng_states", "init_distributed",
    "load_checkpoint", "load_config", "load_run_state", "load_state_dict_strict", "make_grad_scaler",
    "parse_args_with_overrides", "prepare_run_dir", "progress", "read_run_state", "resolve_num_workers",
    "resolve_resume", "restore_rng_state", "save_checkpoint", "save_run_state", "seed_everything", "step_options",
    "unwrap_model", "wrap_model",
]
