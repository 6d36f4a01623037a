"""On-disk, memory-mapped cache of frozen-backbone features.

An entry lives in ``<root>/<model_id>-<hash>/`` where the hash covers the model id, the preprocessing fingerprint and
every input file's absolute path, size and mtime_ns, so changing any of them selects (and builds) a new entry.
An entry holds ``features.npy`` [N, ...] (written through np.lib.format.open_memmap to a temporary name, then
os.replace) and ``meta.json`` (written last; its presence with the matching key marks the entry complete).
Under torch.distributed each rank extracts a contiguous shard into ``parts/part-<rank>.npy``; rank 0 merges them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .errors import DataFormatError

FEATURES, META, PARTS = "features.npy", "meta.json", "parts"


class FeatureCache:
    """FeatureCache(root, model_id, fingerprint).load_or_build(files, extract_fn) -> Tensor [N, ...] backed by a memmap.

    fingerprint: JSON-serialisable description of everything that changes the features besides the weights' id
    (resolution, normalisation, layer, dtype...). The returned tensor maps the file copy-on-write: reads share the
    page cache, in-place writes stay private to the process and never touch the cache. Under DDP, `root` must be
    on a filesystem all ranks share.
    """

    def __init__(self, root: str | Path, model_id: str, fingerprint: dict | str):
        if not model_id:
            raise ValueError("model_id must be a non-empty string")
        try:
            self._fingerprint_json = json.dumps(fingerprint, sort_keys=True)
        except TypeError as e:
            raise ValueError(f"fingerprint must be JSON-serialisable: {e}") from e
        self.root, self.model_id, self.fingerprint = Path(root), model_id, fingerprint

    def key(self, files: Sequence[str | Path]) -> str:
        """Hex digest identifying (model_id, fingerprint, each file's absolute path + size + mtime_ns)."""
        records = []
        for f in files:
            p = Path(f).absolute()
            try:
                st = p.stat()
            except FileNotFoundError:
                raise DataFormatError(p, "file not found (listed for the feature cache)") from None
            records.append([str(p), st.st_size, st.st_mtime_ns])
        blob = json.dumps([self.model_id, self._fingerprint_json, records])
        return hashlib.sha256(blob.encode()).hexdigest()

    def entry_dir(self, files: Sequence[str | Path]) -> Path:
        """Directory of the cache entry for `files` (it may not exist yet)."""
        return self._dir(self.key(files))

    def _dir(self, key: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_id)[:64]
        return self.root / f"{slug}-{key[:24]}"

    def load_or_build(
        self,
        files: Sequence[str | Path],
        extract_fn: Callable[[list[Path]], torch.Tensor],
        batch_size: int = 32,
    ) -> torch.Tensor:
        """Return features [N, ...] for `files` (in order), extracting them with `extract_fn` on a miss.

        extract_fn(list[Path] of length b) -> Tensor | ndarray [b, ...]; called under torch.no_grad(). bfloat16
        features are stored as float32 (numpy has no bfloat16). In a torch.distributed job every rank must call this
        with the same files; it returns the same tensor on every rank.
        """
        files = [Path(f) for f in files]
        if not files:
            raise ValueError("FeatureCache.load_or_build needs at least one file")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        key = self.key(files)
        entry = self._dir(key)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        hit = self._is_complete(entry, key, len(files))
        if distributed:
            hit = _agree_on_key_and_hit(key, hit)
        if not hit:
            entry.mkdir(parents=True, exist_ok=True)
            if distributed:
                self._build_distributed(entry, key, files, extract_fn, batch_size)
            else:
                _extract_to(entry / FEATURES, files, extract_fn, batch_size)
                self._write_meta(entry, key, len(files))
        return torch.from_numpy(np.load(entry / FEATURES, mmap_mode="c"))

    # ------------------------------------------------------------------------------------------------ internals

    def _is_complete(self, entry: Path, key: str, n: int) -> bool:
        try:
            meta = json.loads((entry / META).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return meta.get("key") == key and meta.get("num_files") == n and (entry / FEATURES).is_file()

    def _write_meta(self, entry: Path, key: str, n: int) -> None:
        arr = np.load(entry / FEATURES, mmap_mode="r")
        meta = {
            "key": key,
            "model_id": self.model_id,
            "fingerprint": self.fingerprint,
            "num_files": n,
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
        }
        tmp = entry / f"{META}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, entry / META)

    def _build_distributed(self, entry, key, files, extract_fn, batch_size) -> None:
        rank, world = dist.get_rank(), dist.get_world_size()
        parts = entry / PARTS
        parts.mkdir(exist_ok=True)
        bounds = np.linspace(0, len(files), world + 1).astype(int)
        error = None
        try:
            lo, hi = bounds[rank], bounds[rank + 1]
            if hi > lo:
                _extract_to(parts / f"part-{rank:05d}.npy", files[lo:hi], extract_fn, batch_size)
        except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks learn of it
            error = e
        _raise_if_any_failed(error, "feature extraction")
        if rank == 0:
            try:
                shards = [parts / f"part-{r:05d}.npy" for r in range(world) if bounds[r + 1] > bounds[r]]
                _merge(shards, entry / FEATURES)
                self._write_meta(entry, key, len(files))
                shutil.rmtree(parts, ignore_errors=True)
            except Exception as e:  # noqa: BLE001
                error = e
        _raise_if_any_failed(error, "feature merge on rank 0")


def _to_numpy(out, n: int, first: Path) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu()
        out = (out.float() if out.dtype == torch.bfloat16 else out).numpy()
    out = np.asarray(out)
    if out.ndim == 0 or out.shape[0] != n or out.dtype == object:
        raise ValueError(
            f"extract_fn returned shape {out.shape} ({out.dtype}) for a batch of {n} files starting at {first}"
        )
    return out


def _extract_to(target: Path, files: list[Path], extract_fn, batch_size: int) -> None:
    """Extract features of `files` batch by batch straight into a memmapped .npy, then atomically rename it."""
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy")
    arr = None
    try:
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            with torch.no_grad():
                out = _to_numpy(extract_fn(batch), len(batch), batch[0])
            if arr is None:
                arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=out.dtype, shape=(len(files), *out.shape[1:]))
            elif out.shape[1:] != arr.shape[1:]:
                raise ValueError(
                    f"extract_fn returned per-item shape {out.shape[1:]} at {batch[0]}, "
                    f"earlier batches gave {arr.shape[1:]}"
                )
            arr[start : start + len(batch)] = out
        arr.flush()
        del arr
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _merge(shards: list[Path], target: Path) -> None:
    parts = [np.load(p, mmap_mode="r") for p in shards]
    if len({(p.shape[1:], p.dtype) for p in parts}) != 1:
        raise ValueError(f"feature shards disagree in shape/dtype: {[(p.shape, str(p.dtype)) for p in parts]}")
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy")
    try:
        total = sum(len(p) for p in parts)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=parts[0].dtype, shape=(total, *parts[0].shape[1:]))
        start = 0
        for p in parts:
            out[start : start + len(p)] = p
            start += len(p)
        out.flush()
        del out
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_true(flag: bool) -> bool:
    """Logical AND of `flag` over all ranks (also a synchronisation point)."""
    t = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _agree_on_key_and_hit(key: str, hit: bool) -> bool:
    """Check every rank computed the same key (same files, sizes, mtimes); return True iff all ranks see a hit."""
    k = int(key[:15], 16)
    t = torch.tensor([k, -k, int(not hit)], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if t[0].item() != -t[1].item():
        raise RuntimeError(
            "FeatureCache: ranks disagree on the cache key; every rank must pass the same files, model_id and "
            "fingerprint, and see the same file sizes and mtimes"
        )
    return t[2].item() == 0


def _raise_if_any_failed(error: Exception | None, what: str) -> None:
    """Synchronise all ranks; raise `error` locally, or a RuntimeError on ranks whose peers failed."""
    all_ok = _all_true(error is None)
    if error is not None:
        raise error
    if not all_ok:
        raise RuntimeError(f"{what} failed on another rank; see that rank's error")
