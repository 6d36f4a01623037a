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
        # inputs from a dataset: each rank loads the items of its own shard
        loaded = []
        feats3 = FeatureCache(cache_dir, "ddp-model-dataset", {"size": 8}).load_or_build(
            files, lambda b: loaded.extend(b[1].tolist()) or b[0].tanh().reshape(len(b[0]), 2, 3), batch_size=2,
            dataset=FileDataset(files))
        torch.save(
            {
                "feats": feats.clone(),
                "seen": [str(p) for p in ext.seen],
                "seen2": len(second.seen),
                "feats2": feats2.clone(),
                "feats3": feats3.clone(),
                "loaded": loaded,
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
        torch.testing.assert_close(r["feats3"], direct, rtol=0, atol=0)
        assert r["seen2"] == 0  # second call is a hit on both ranks
    assert sorted(res[0]["loaded"] + res[1]["loaded"]) == list(range(9)) and res[0]["loaded"] == [0, 1, 2, 3]
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


# ------------------------------------------------------------------------------------- damaged entries, options


def _damage_cases():
    def truncate(entry):
        f = entry / "features.npy"
        f.write_bytes(f.read_bytes()[:-20])

    def append(entry):
        with open(entry / "features.npy", "ab") as f:
            f.write(b"\0" * 24)

    def garble_header(entry):
        f = entry / "features.npy"
        f.write_bytes(os.urandom(64) + f.read_bytes()[64:])

    def garble_data(entry):
        f = entry / "features.npy"
        data = bytearray(f.read_bytes())
        data[-5] ^= 0xFF  # one flipped byte inside the last feature
        f.write_bytes(bytes(data))

    def pickle_payload(entry):
        import pickle

        class RunsCode:
            def __reduce__(self):
                return os.system, (f"touch '{entry / 'RAN'}'",)

        (entry / "features.npy").write_bytes(pickle.dumps(RunsCode()))

    def truncate_meta(entry):
        f = entry / "meta.json"
        f.write_text(f.read_text()[:30])

    def wrong_meta_shape(entry):
        meta = json.loads((entry / "meta.json").read_text())
        meta["shape"] = [5, 6]
        (entry / "meta.json").write_text(json.dumps(meta))

    def wrong_dtype_array(entry):
        np.save(entry / "features.npy", np.zeros((5, 2, 3), dtype=np.float64))

    return {f.__name__: f for f in (truncate, append, garble_header, garble_data, pickle_payload, truncate_meta,
                                    wrong_meta_shape, wrong_dtype_array)}


DAMAGE = _damage_cases()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_entry_is_rebuilt_with_a_log_line(tmp_path, damage, caplog):
    files = make_files(tmp_path / "data", 5)
    cache = FeatureCache(tmp_path / "cache", "m", "fp")
    cache.load_or_build(files, Extractor(), batch_size=2)
    entry = cache.entry_dir(files)
    DAMAGE[damage](entry)
    ext = Extractor()
    with caplog.at_level("WARNING", logger="common_utils.data.feature_cache"):
        feats = cache.load_or_build(files, ext, batch_size=2)
    assert ext.seen == files  # rebuilt
    assert f"{entry}: unusable cache entry" in caplog.text and "rebuilding" in caplog.text
    torch.testing.assert_close(feats, Extractor()(files), rtol=0, atol=0)
    assert not (entry / "RAN").exists()
    again = Extractor()
    cache.load_or_build(files, again)
    assert again.seen == []  # the rebuilt entry is a hit


def test_verify_false_still_checks_size_and_metadata(tmp_path):
    files = make_files(tmp_path / "data", 5)
    cache = FeatureCache(tmp_path / "cache", "m", "fp", verify=False)
    cache.load_or_build(files, Extractor())
    for damage in ("truncate", "append", "garble_header", "wrong_meta_shape"):
        DAMAGE[damage](cache.entry_dir(files))
        ext = Extractor()
        torch.testing.assert_close(cache.load_or_build(files, ext), Extractor()(files), rtol=0, atol=0)
        assert ext.seen == files, damage


def test_key_by_content_sees_edits_that_keep_size_and_mtime(tmp_path):
    files = make_files(tmp_path / "data", 3)
    by_stat = FeatureCache(tmp_path / "cache", "m", "fp")
    by_content = FeatureCache(tmp_path / "cache", "m", "fp", key_by="content")
    by_stat.load_or_build(files, Extractor())
    by_content.load_or_build(files, Extractor())
    st = files[1].stat()
    files[1].write_bytes(np.full(6, 2.0, dtype=np.float32).tobytes())  # same size
    os.utime(files[1], ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    stale = Extractor()
    by_stat.load_or_build(files, stale)
    assert stale.seen == []  # size + mtime cannot see this edit
    fresh = Extractor()
    feats = by_content.load_or_build(files, fresh)
    assert fresh.seen == files
    torch.testing.assert_close(feats[1], torch.full((2, 3), 2.0).tanh())
    with pytest.raises(ValueError, match="key_by"):
        FeatureCache(tmp_path, "m", "fp", key_by="mtime")


class FileDataset(torch.utils.data.Dataset):
    """Model inputs: item i = (the vector of files[i] [6], the DataLoader worker id, or i in the main process)."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        worker = torch.utils.data.get_worker_info()
        return torch.from_numpy(np.fromfile(self.files[i], dtype=np.float32)), (i if worker is None else worker.id)


def test_dataset_inputs_are_loaded_by_workers_in_order(tmp_path):
    files = make_files(tmp_path / "data", 7)
    workers = set()

    def encode(batch):
        x, worker_ids = batch
        workers.update(worker_ids.tolist())
        return x.tanh().reshape(len(x), 2, 3)

    cache = FeatureCache(tmp_path / "cache", "m", "fp")
    feats = cache.load_or_build(files, encode, batch_size=2, dataset=FileDataset(files), num_workers=2)
    torch.testing.assert_close(feats, Extractor()(files), rtol=0, atol=0)
    assert workers == {0, 1}
    with pytest.raises(ValueError, match="dataset has 6 items for 7 files"):
        FeatureCache(tmp_path / "c2", "m", "fp").load_or_build(files, encode, dataset=FileDataset(files[:6]))
