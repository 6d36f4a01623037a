"""Training mechanics shared by every trainer: seeding, checkpoints, configs, logging, distributed, guards."""
from .checkpoint import (
    StateDictMismatchError,
    capture_rng_state,
    check_state_dict,
    load_checkpoint,
    load_state_dict_strict,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
)
from .config import ConfigError, load_config, parse_args_with_overrides, prepare_run_dir
from .distributed import (
    DistContext,
    all_gather_cat,
    all_reduce_mean,
    barrier,
    cleanup_distributed,
    gather_rng_states,
    init_distributed,
)
from .guards import NonFiniteLossError, autocast_context, check_finite, make_grad_scaler
from .metric_logger import MetricLogger, progress
from .seed import seed_everything

__all__ = [
    "ConfigError", "DistContext", "MetricLogger", "NonFiniteLossError", "StateDictMismatchError", "check_state_dict",
    "load_state_dict_strict", "all_gather_cat", "all_reduce_mean",
    "autocast_context", "barrier", "capture_rng_state", "check_finite", "cleanup_distributed", "gather_rng_states",
    "init_distributed",
    "load_checkpoint", "load_config", "make_grad_scaler", "parse_args_with_overrides", "prepare_run_dir", "progress",
    "resolve_resume",
    "restore_rng_state",
    "save_checkpoint", "seed_everything",
]
