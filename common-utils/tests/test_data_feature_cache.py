"""FeatureCache: hit/miss, invalidation on mtime / model id / fingerprint change, equality with direct extraction,
memmap backing, and a 2-process gloo build (ranks extract disjoint shards, rank 0 merges)."""

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common_utils.data import DataFormatError, FeatureCache


def make_files(root: Path, n: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        f = root / f"item{i:02d}.bin"
        f.write_bytes(np.random.default_rng(i).standard_normal(6).astype(np.float32).tobytes())
        files.append(f)
    return files


class Extractor:
    """Deterministic "backbone": features [b, 2, 3] from file contents and a scale; records the files it saw."""

    def __init__(self, scale: float = 1.0):
        self.scale, self.seen = scale, []

    def __call__(self, paths):
        self.seen.extend(paths)
        x = torch.stack([torch.from_numpy(np.fromfile(p, dtype=np.float32)) for p in paths])
        return (self.scale * x.tanh()).reshape(len(paths), 2, 3)


def test_miss_then_hit_equals_direct_extraction(tmp_path):
    files = make_files(tmp_path / "data", 7)
    direct = Extractor()(files)
    cache = FeatureCache(tmp_path / "cache", "clip-vit-b16", {"size": 224, "mean": [0.5, 0.5, 0.5]})
    ext = Extractor()
    feats = cache.load_or_build(files, ext, batch_size=3)
    assert ext.seen == files  # extracted once, in order, batch by batch
    assert feats.shape == (7, 2, 3) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, direct, rtol=0, atol=0)

    again = Extractor()
    feats2 = cache.load_or_build(files, again, batch_size=3)
    assert again.seen == []  # cache hit: no extraction
    torch.testing.assert_close(feats2, direct, rtol=0, atol=0)

    entry = cache.entry_dir(files)
    assert entry.parent == tmp_path / "cache" and entry.name.startswith("clip-vit-b16-")
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["num_files"] == 7 and meta["shape"] == [7, 2, 3] and meta["model_id"] == "clip-vit-b16"
    assert sorted(p.name for p in entry.iterdir()) == ["features.npy", "meta.json"]  # no temp files left


def test_result_is_backed_by_the_memmap_copy_on_write(tmp_path):
    files = make_files(tmp_path / "data", 4)
    cache = FeatureCache(tmp_path / "cache", "m", "fp")
    feats = cache.load_or_build(files, Extractor())
    on_disk = np.load(cache.entry_dir(files) / "features.npy")
    mm = np.load(cache.entry_dir(files) / "features.npy", mmap_mode="r")
    assert isinstance(mm, np.memmap)
    # a tensor sharing a memmap: writing to it changes the mapped pages of this process only, never the file
    feats[0, 0, 0] = 123.0
    np.testing.assert_array_equal(np.load(cache.entry_dir(files) / "features.npy"), on_disk)
    assert cache.load_or_build(files, Extractor())[0, 0, 0].item() == on_disk[0, 0, 0]


def test_invalidation_on_mtime_model_id_fingerprint_and_file_list(tmp_path):
    files = make_files(tmp_path / "data", 5)
    root = tmp_path / "cache"
    FeatureCache(root, "m1", {"size": 32}).load_or_build(files, Extractor())

    def rebuilt(cache, file_list=files, scale=1.0):
        ext = Extractor(scale)
        out = cache.load_or_build(file_list, ext)
        return len(ext.seen) > 0, out

    assert rebuilt(FeatureCache(root, "m1", {"size": 32}))[0] is False
    assert rebuilt(FeatureCache(root, "m2", {"size": 32}))[0] is True  # model id
    assert rebuilt(FeatureCache(root, "m1", {"size": 64}))[0] is True  # fingerprint
    assert rebuilt(FeatureCache(root, "m1", {"size": 32}), files[:4])[0] is True  # file list
    assert rebuilt(FeatureCache(root, "m1", {"size": 32}))[0] is False  # the original entry is still valid

    # same size, new content and mtime: rebuilt with the new content
    st = files[2].stat()
    files[2].write_bytes(np.full(6, 3.0, dtype=np.float32).tobytes())
    os.utime(files[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    was_rebuilt, feats = rebuilt(FeatureCache(root, "m1", {"size": 32}))
    assert was_rebuilt
    torch.testing.assert_close(feats[2], torch.full((2, 3), 3.0).tanh())


def test_incomplete_entry_is_rebuilt_and_bad_inputs_are_errors(tmp_path):
    files = make_files(tmp_path / "data", 3)
    cache = FeatureCache(tmp_path / "cache", "m", "fp")
    cache.load_or_build(files, Extractor())
    (cache.entry_dir(files) / "meta.json").unlink()  # as if the writer died before finishing
    ext = Extractor()
    cache.load_or_build(files, ext)
    assert ext.seen == files

    with pytest.raises(DataFormatError, match=r"missing\.bin: file not found"):
        cache.load_or_build(files + [tmp_path / "missing.bin"], Extractor())
    with pytest.raises(ValueError, match=r"extract_fn returned shape \(1, 6\)"):
        FeatureCache(tmp_path / "c2", "m", "fp").load_or_build(files, lambda p: torch.zeros(1, 6))
    with pytest.raises(ValueError, match="JSON-serialisable"):
        FeatureCache(tmp_path, "m", {"x": object()})
    assert not list((tmp_path / "c2").rglob("*.npy"))  # failed build leaves no partial features


def test_bfloat16_features_are_stored_as_float32(tmp_path):
    files = make_files(tmp_path / "data", 3)
    feats = FeatureCache(tmp_path / "cache", "m", "bf16").load_or_build(
        files, lambda p: Extractor()(p).to(torch.bfloat16)
    )
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats, Extractor()(files).to(torch.bfloat16).float(), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, data_dir, cache_dir, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        files = sorted(Path(data_dir).glob("*.bin"))
        cache = FeatureCache(cache_dir, "ddp-model", {"size": 8})
        ext = Extractor()
        feats = cache.load_or_build(files, ext, batch_size=2)
        second = Extractor()
        feats2 = cache.load_or_build(files, second, batch_size=2)
        torch.save(
            {
                "feats": feats.clone(),
                "seen": [str(p) for p in ext.seen],
                "seen2": len(second.seen),
                "feats2": feats2.clone(),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_build_disjoint_shards_and_merge(tmp_path):
    # "fork" keeps this test at a few seconds (the children inherit the imported torch; no CUDA or process group
    # exists in the parent). The cache does not depend on the start method: CACHE_TEST_START=spawn runs the same
    # test with torch.multiprocessing spawn (about 10x slower on a loaded 2-core machine).
    files = make_files(tmp_path / "data", 9)
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(
        _ddp_worker,
        args=(2, _free_port(), str(tmp_path / "data"), str(tmp_path / "cache"), str(out)),
        nprocs=2,
        join=True,
        start_method=os.environ.get("CACHE_TEST_START", "fork"),
    )
    res = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    seen = [set(r["seen"]) for r in res]
    assert seen[0] and seen[1] and not seen[0] & seen[1]  # each rank extracted its own shard
    assert seen[0] | seen[1] == {str(f) for f in files}
    direct = Extractor()(files)
    for r in res:
        torch.testing.assert_close(r["feats"], direct, rtol=0, atol=0)
        torch.testing.assert_close(r["feats2"], direct, rtol=0, atol=0)
        assert r["seen2"] == 0  # second call is a hit on both ranks
    entry = FeatureCache(tmp_path / "cache", "ddp-model", {"size": 8}).entry_dir(files)
    assert sorted(p.name for p in entry.iterdir()) == ["features.npy", "meta.json"]  # part files merged and removed


def _ddp_failing_worker(rank, world, port, data_dir, cache_dir, out_dir, mode):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        files = sorted(Path(data_dir).glob("*.bin"))
        fingerprint = {"size": 8 + (rank if mode == "key_mismatch" else 0)}

        def extract(paths):
            if mode == "fail_rank1" and rank == 1:
                raise OSError(f"decoder crashed on {paths[0].name}")
            return Extractor()(paths)

        try:
            FeatureCache(cache_dir, "m", fingerprint).load_or_build(files, extract)
            msg = "no error"
        except (OSError, RuntimeError) as e:
            msg = f"{type(e).__name__}: {e}"
        (Path(out_dir) / f"rank{rank}.txt").write_text(msg)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("fail_rank1", ["RuntimeError: feature extraction failed on another rank", "OSError: decoder crashed on item"]),
        ("key_mismatch", ["RuntimeError: FeatureCache: ranks disagree on the cache key"] * 2),
    ],
)
def test_ddp_errors_reach_every_rank_without_hanging(tmp_path, mode, expected):
    make_files(tmp_path / "data", 4)
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(
        _ddp_failing_worker,
        args=(2, _free_port(), str(tmp_path / "data"), str(tmp_path / "cache"), str(out), mode),
        nprocs=2,
        join=True,
        start_method=os.environ.get("CACHE_TEST_START", "fork"),
    )
    for r in range(2):
        assert (out / f"rank{r}.txt").read_text().startswith(expected[r])
    assert not list((tmp_path / "cache").rglob("features.npy"))
