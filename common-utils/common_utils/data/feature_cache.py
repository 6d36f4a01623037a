"""On-disk, memory-mapped cache of frozen-backbone features.

An entry lives in ``<root>/<model_id>-<hash>/`` where the hash covers the model id, the preprocessing fingerprint and
every input file's absolute path with its size and mtime_ns (``key_by="stat"``) or its content's SHA-256
(``key_by="content"``, for files that change without their size/mtime changing), so changing any of them selects (and
builds) a new entry. An entry holds ``features.npy`` [N, ...] (written through np.lib.format.open_memmap to a temporary
name, then os.replace) and ``meta.json`` (written last: key, shape, dtype and the SHA-256 of the array's bytes; its
presence with the matching key marks the entry complete).
Every load checks the entry against its metadata: readable header, shape, dtype, file size and (``verify=True``, the
default) the content hash. A truncated or garbled array or metadata file is rebuilt with a warning naming the path;
the cache never returns a wrong array.
Under torch.distributed each rank extracts a contiguous shard into ``parts/part-<rank>.npy``; rank 0 merges them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Subset

from .errors import DataFormatError

log = logging.getLogger(__name__)

FEATURES, META, PARTS = "features.npy", "meta.json", "parts"


class FeatureCache:
    """FeatureCache(root, model_id, fingerprint).load_or_build(files, extract_fn) -> Tensor [N, ...] backed by a memmap.

    fingerprint: JSON-serialisable description of everything that changes the features besides the weights' id
    (resolution, normalisation, layer, dtype...). key_by: "stat" (path, size, mtime) or "content" (path, SHA-256 of
    the bytes; reads every file on each call). verify: hash the cached array on every load (one sequential read of
    it) besides the always-on header/shape/dtype/size checks. The returned tensor maps the file copy-on-write: reads
    share the page cache, in-place writes stay private to the process and never touch the cache. Under DDP, `root`
    must be on a filesystem all ranks share.
    """

    def __init__(self, root: str | Path, model_id: str, fingerprint: dict | str, key_by: str = "stat",
                 verify: bool = True):
        if not model_id:
            raise ValueError("model_id must be a non-empty string")
        if key_by not in ("stat", "content"):
            raise ValueError(f"key_by must be 'stat' or 'content', got {key_by!r}")
        try:
            self._fingerprint_json = json.dumps(fingerprint, sort_keys=True)
        except TypeError as e:
            raise ValueError(f"fingerprint must be JSON-serialisable: {e}") from e
        self.root, self.model_id, self.fingerprint = Path(root), model_id, fingerprint
        self.key_by, self.verify = key_by, verify

    def key(self, files: Sequence[str | Path]) -> str:
        """Hex digest identifying (model_id, fingerprint, each file's absolute path + size + mtime_ns or content)."""
        records = []
        for f in files:
            p = Path(f).absolute()
            try:
                st = p.stat()
                records.append([str(p), _file_sha256(p)] if self.key_by == "content"
                               else [str(p), st.st_size, st.st_mtime_ns])
            except FileNotFoundError:
                raise DataFormatError(p, "file not found (listed for the feature cache)") from None
        blob = json.dumps([self.model_id, self._fingerprint_json, self.key_by, records])
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
        extract_fn: Callable[[Any], torch.Tensor],
        batch_size: int = 32,
        dataset: Dataset | None = None,
        num_workers: int = 0,
    ) -> torch.Tensor:
        """Return features [N, ...] for `files` (in order), extracting them with `extract_fn` on a miss.

        Without `dataset`: extract_fn(list[Path] of length b) loads and encodes its files.
        With `dataset` (map-style, item i = the model input of files[i], e.g. a decoded and transformed image): a
        DataLoader with `num_workers` worker processes loads the inputs in order, batch by batch (pinned memory on
        CUDA), and extract_fn(collated batch) only encodes them.
        extract_fn returns a Tensor | ndarray [b, ...] and runs under torch.no_grad(). bfloat16 features are stored as
        float32 (numpy has no bfloat16). In a torch.distributed job every rank must call this with the same files;
        it returns the same tensor on every rank.
        """
        files = [Path(f) for f in files]
        if not files:
            raise ValueError("FeatureCache.load_or_build needs at least one file")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if dataset is not None and len(dataset) != len(files):
            raise ValueError(f"dataset has {len(dataset)} items for {len(files)} files; item i must be files[i]")
        key = self.key(files)
        entry = self._dir(key)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        problem = self._check(entry, key, len(files), self.verify)
        hit = problem is None
        if distributed:
            hit = _agree_on_key_and_hit(key, hit)
        if not hit:
            if problem not in (None, _MISSING):
                log.warning("%s: unusable cache entry (%s); rebuilding it", entry, problem)
            entry.mkdir(parents=True, exist_ok=True)
            if not distributed or dist.get_rank() == 0:
                (entry / META).unlink(missing_ok=True)  # incomplete until rewritten
            source = _Source(files, extract_fn, batch_size, dataset, num_workers)
            if distributed:
                self._build_distributed(entry, key, source)
            else:
                digest = _extract_to(entry / FEATURES, source, 0, len(files))
                self._write_meta(entry, key, len(files), digest)
            problem = self._check(entry, key, len(files), verify=False)  # just hashed while writing
            if problem is not None:
                raise DataFormatError(entry, f"the cache entry just written does not read back ({problem}); is the "
                                             "disk full or the folder shared with another writer?")
        return torch.from_numpy(np.load(entry / FEATURES, mmap_mode="c"))

    # ------------------------------------------------------------------------------------------------ internals

    def _check(self, entry: Path, key: str, n: int, verify: bool) -> str | None:
        """None if the entry is complete and intact, else what is wrong with it."""
        try:
            meta = json.loads((entry / META).read_text())
        except FileNotFoundError:
            return _MISSING
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"{META} is unreadable: {e}"
        if not isinstance(meta, dict) or meta.get("key") != key:
            return f"{META} does not belong to this entry"
        if meta.get("num_files") != n or not isinstance(meta.get("shape"), list) or not meta.get("dtype"):
            return f"{META} is incomplete or garbled"
        path = entry / FEATURES
        try:
            arr = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            return f"{FEATURES} is missing"
        except (OSError, ValueError, EOFError) as e:  # e.g. "mmap length is greater than file size"
            return f"{FEATURES} is truncated or garbled: {e}"
        if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"] or arr.shape[0] != n:
            return f"{FEATURES} holds {arr.dtype} {list(arr.shape)}, {META} says {meta['dtype']} {meta['shape']}"
        if path.stat().st_size != arr.offset + arr.nbytes:
            return f"{FEATURES} is {path.stat().st_size} bytes, expected {arr.offset + arr.nbytes}"
        if verify and _array_sha256(arr) != meta.get("sha256"):
            return f"the content of {FEATURES} does not match the SHA-256 in {META} (garbled)"
        return None

    def _write_meta(self, entry: Path, key: str, n: int, digest: str) -> None:
        arr = np.load(entry / FEATURES, mmap_mode="r")
        meta = {
            "key": key,
            "model_id": self.model_id,
            "fingerprint": self.fingerprint,
            "key_by": self.key_by,
            "num_files": n,
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
            "sha256": digest,
        }
        tmp = entry / f"{META}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, entry / META)

    def _build_distributed(self, entry: Path, key: str, source: _Source) -> None:
        rank, world = dist.get_rank(), dist.get_world_size()
        n = len(source.files)
        parts = entry / PARTS
        parts.mkdir(exist_ok=True)
        bounds = np.linspace(0, n, world + 1).astype(int)
        error = None
        try:
            lo, hi = int(bounds[rank]), int(bounds[rank + 1])
            if hi > lo:
                _extract_to(parts / f"part-{rank:05d}.npy", source, lo, hi)
        except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks learn of it
            error = e
        _raise_if_any_failed(error, "feature extraction")
        if rank == 0:
            try:
                shards = [parts / f"part-{r:05d}.npy" for r in range(world) if bounds[r + 1] > bounds[r]]
                digest = _merge(shards, entry / FEATURES)
                self._write_meta(entry, key, n, digest)
                shutil.rmtree(parts, ignore_errors=True)
            except Exception as e:  # noqa: BLE001
                error = e
        _raise_if_any_failed(error, "feature merge on rank 0")


_MISSING = "no complete entry"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _array_sha256(arr: np.ndarray, hasher=None) -> str:
    """SHA-256 of a C-contiguous array's bytes, read in row blocks of about 16 MiB."""
    h = hasher or hashlib.sha256()
    rows = max(1, (16 << 20) // max(1, arr[:1].nbytes))
    for start in range(0, arr.shape[0], rows):
        h.update(np.ascontiguousarray(arr[start:start + rows]).data)
    return h.hexdigest()


class _Source:
    """Where a build's inputs come from: the files (extract_fn loads them) or a dataset read by a DataLoader."""

    def __init__(self, files: list[Path], extract_fn, batch_size: int, dataset: Dataset | None, num_workers: int):
        self.files, self.extract_fn, self.batch_size = files, extract_fn, batch_size
        self.dataset, self.num_workers = dataset, num_workers

    def batches(self, lo: int, hi: int) -> Iterator[tuple[int, Any]]:
        """(start index, extract_fn's argument) for items lo..hi-1 in order."""
        if self.dataset is None:
            for start in range(lo, hi, self.batch_size):
                yield start, self.files[start:min(start + self.batch_size, hi)]
            return
        loader = DataLoader(Subset(self.dataset, range(lo, hi)), batch_size=self.batch_size, shuffle=False,
                            num_workers=self.num_workers, pin_memory=torch.cuda.is_available())
        for i, batch in enumerate(loader):
            yield lo + i * self.batch_size, batch


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


def _extract_to(target: Path, source: _Source, lo: int, hi: int) -> str:
    """Extract items lo..hi-1 batch by batch straight into a memmapped .npy, then atomically rename it.

    Returns the SHA-256 of the array's bytes (hashed batch by batch as written)."""
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy")
    arr, h, n = None, hashlib.sha256(), int(hi - lo)
    try:
        for start, batch in source.batches(lo, hi):
            b = min(source.batch_size, hi - start)
            with torch.no_grad():
                out = _to_numpy(source.extract_fn(batch), b, source.files[start])
            if arr is None:
                arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=out.dtype, shape=(n, *out.shape[1:]))
            elif out.shape[1:] != arr.shape[1:]:
                raise ValueError(
                    f"extract_fn returned per-item shape {out.shape[1:]} at {source.files[start]}, "
                    f"earlier batches gave {arr.shape[1:]}"
                )
            arr[start - lo : start - lo + b] = out
            _array_sha256(arr[start - lo : start - lo + b], h)
        arr.flush()
        del arr
        os.replace(tmp, target)
        return h.hexdigest()
    finally:
        tmp.unlink(missing_ok=True)


def _merge(shards: list[Path], target: Path) -> str:
    """Concatenate the shards into `target` (atomically); returns the SHA-256 of the merged array's bytes."""
    parts = [np.load(p, mmap_mode="r") for p in shards]
    if len({(p.shape[1:], p.dtype) for p in parts}) != 1:
        raise ValueError(f"feature shards disagree in shape/dtype: {[(p.shape, str(p.dtype)) for p in parts]}")
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy")
    h = hashlib.sha256()
    try:
        total = sum(len(p) for p in parts)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=parts[0].dtype, shape=(total, *parts[0].shape[1:]))
        start = 0
        for p in parts:
            out[start : start + len(p)] = p
            _array_sha256(out[start : start + len(p)], h)
            start += len(p)
        out.flush()
        del out
        os.replace(tmp, target)
        return h.hexdigest()
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
