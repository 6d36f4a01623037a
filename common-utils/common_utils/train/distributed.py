"""Distributed set-up from torchrun or SLURM variables (nccl on GPU, gloo on CPU) and small collectives."""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..safe_load import load_bytes


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool
    distributed: bool


def _first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM hostlist: ``node[03-05,07],gpu1`` -> ``node03``, ``rack[1-2]-n[8,9]`` -> ``rack1-n8``.

    Each bracket group contributes its first entry (zero padding kept), text between groups is copied, and the list
    ends at the first comma outside brackets. An empty list gives ``127.0.0.1``.
    """
    host, i, text = [], 0, nodelist.strip()
    while i < len(text) and text[i] != ",":
        if text[i] == "[":
            end = text.find("]", i)
            if end < 0:
                raise ValueError(f"SLURM nodelist {nodelist!r}: '[' without ']'")
            host.append(re.split(r"[,-]", text[i + 1:end])[0])
            i = end + 1
        else:
            host.append(text[i])
            i += 1
    return "".join(host) or "127.0.0.1"


def _env_from_slurm() -> None:
    """Translate SLURM task variables into the torchrun ones when srun (not torchrun) launched us.

    The rendezvous host is the first node of the step (``SLURM_STEP_NODELIST``; srun places task 0 there), else of
    the job; on several nodes it must resolve to that node's address on the others. ``MASTER_ADDR`` /
    ``MASTER_PORT`` already in the environment win; the default port is derived from the job id, so jobs sharing
    a node do not collide, and from ``SLURM_RESTART_COUNT``, so a requeued job (same id) does not meet the port its
    killed run may still hold.
    """
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ:
        return
    ntasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if ntasks <= 1:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = str(ntasks)
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    nodelist = next((os.environ[v] for v in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
                     if os.environ.get(v)), "")
    os.environ.setdefault("MASTER_ADDR", _first_slurm_host(nodelist))
    job, restart = int(os.environ.get("SLURM_JOB_ID", "0")), int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    os.environ.setdefault("MASTER_PORT", str(20000 + (job + 7919 * restart) % 20000))


def init_distributed(device: str | None = None) -> DistContext:
    """Initialise the default process group if the environment asks for more than one process.

    ``device`` (the config's ``device`` knob) forces ``"cpu"`` or ``"cuda"``; ``None`` or ``"auto"`` use CUDA when
    available. Returns the process's context.
    """
    if device not in (None, "auto", "cpu") and not str(device).startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        device = None
    _env_from_slurm()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    distributed = world_size > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, dev, rank == 0, distributed)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all ranks (a copy; the input is unchanged)."""
    out = tensor.detach().clone()
    if _active():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def _gather_padded(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` in rank order (sizes along dim 0 may differ; the other dims must agree)."""
    world = dist.get_world_size()
    n = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return [p[: int(s.item())] for p, s in zip(parts, sizes)]


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate along dim 0 the tensors of every rank, in rank order; sizes along dim 0 may differ."""
    if not _active():
        return tensor
    return torch.cat(_gather_padded(tensor))


def all_gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank (one element without a process group).

    ``obj`` holds what a weights-only ``torch.load`` reads (tensors, numbers, strings, lists, tuples, dicts); it
    travels as ``torch.save`` bytes and is read back with ``weights_only=True``, so no rank runs pickled code
    (``dist.all_gather_object`` would unpickle freely). One process round-trips it too, so an object that could not
    cross ranks fails on one as well. Tensors come back on the CPU.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)
    if _active():
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        parts = [p.cpu() for p in _gather_padded(payload.to(device))]
    else:
        parts = [payload]
    return [load_bytes(p.numpy().tobytes(), what="all_gather_objects: the object") for p in parts]


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_rng_states() -> list[dict]:
    """Every rank's :func:`capture_rng_state`, in rank order, on every rank (one element without a process group).

    Save the list in a checkpoint and restore ``states[rank]`` on resume, so that per-rank random streams
    (augmentation, dropout) continue exactly.
    """
    from .checkpoint import capture_rng_state

    return all_gather_objects(capture_rng_state())
