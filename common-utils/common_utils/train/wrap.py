"""A model, its optimizer and its loaders on a device: DDP, channels_last, compile, fused AdamW, loader workers."""
from __future__ import annotations

import logging
import os

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from .distributed import DistContext

log = logging.getLogger(__name__)


def wrap_model(module: torch.nn.Module, ctx: DistContext, *, channels_last: bool = False, compile: bool = False,
               find_unused_parameters: bool = False) -> torch.nn.Module:
    """Move ``module`` to ``ctx.device``; optionally channels_last; DDP when distributed; optionally ``torch.compile``.

    Returns the module to call in the training loop. The bare module (for state dicts, EMA, evaluation) is
    ``module`` itself, or :func:`unwrap_model` of the result. A module without trainable parameters is not wrapped
    in DDP (there is nothing to synchronise).
    """
    module = module.to(ctx.device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    model = module
    if ctx.distributed and any(p.requires_grad for p in module.parameters()):
        model = DistributedDataParallel(module, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
                                        find_unused_parameters=find_unused_parameters)
    if compile:
        model = torch.compile(model)
    return model


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside ``torch.compile`` and DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, DistributedDataParallel) else model


def adamw(params, *, lr: float, weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW with the fused kernel where every parameter allows it (floating point, on CPU or CUDA), else foreach.

    ``params`` may be an iterable of tensors or of param-group dicts, as for ``torch.optim.AdamW``.
    """
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(tensors) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors) \
        and len({p.device for p in tensors}) == 1
    kind = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps, **kind)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_num_workers(requested: int, world_size: int = 1) -> int:
    """``requested`` loader workers, capped so that all ranks on this node together never exceed its cores."""
    if requested < 0:
        raise ValueError(f"data.num_workers must be >= 0, got {requested}")
    cap = max(0, available_cores() // max(1, world_size) - 1)
    if requested > cap:
        log.info("data.num_workers=%d capped to %d: %d cores for %d process(es)", requested, cap,
                 available_cores(), world_size)
        return cap
    return requested


def build_loader(dataset: Dataset, batch_size: int, ctx: DistContext, *, num_workers: int = 0,
                 sampler: Sampler | None = None, batch_sampler: Sampler | None = None, shuffle: bool = False,
                 drop_last: bool = False, collate_fn=None, worker_init_fn=None, generator=None,
                 prefetch_factor: int | None = None) -> DataLoader:
    """A DataLoader with the settings every trainer wants.

    Workers are capped at the cores available per rank (:func:`resolve_num_workers`) and kept alive across epochs
    (``persistent_workers``); batches are pinned when training on CUDA.
    """
    workers = resolve_num_workers(num_workers, _local_world_size(ctx))
    kwargs = dict(num_workers=workers, collate_fn=collate_fn, worker_init_fn=worker_init_fn, generator=generator,
                  pin_memory=ctx.device.type == "cuda", persistent_workers=workers > 0)
    if workers > 0 and prefetch_factor is not None:
        kwargs["prefetch_factor"] = prefetch_factor
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle if sampler is None else False,
                      drop_last=drop_last, **kwargs)


def _local_world_size(ctx: DistContext) -> int:
    """Processes sharing this node: torchrun's LOCAL_WORLD_SIZE, else SLURM's tasks per node (``2`` or ``2(x3)``)."""
    if not ctx.distributed:
        return 1
    raw = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("SLURM_NTASKS_PER_NODE") or "1"
    return max(1, int(raw.split("(")[0]))
