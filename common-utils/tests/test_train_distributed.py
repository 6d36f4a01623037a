import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from common_utils.train import (
    NonFiniteLossError,
    all_gather_cat,
    all_gather_objects,
    all_reduce_mean,
    check_finite,
    cleanup_distributed,
    gather_rng_states,
    init_distributed,
)
from common_utils.train.distributed import _env_from_slurm, _first_slurm_host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir, slurm):
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    if slurm:
        env.update(SLURM_PROCID=str(rank), SLURM_NTASKS=str(world), SLURM_LOCALID=str(rank),
                   SLURM_JOB_NODELIST="localhost")
    else:
        env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.environ.update(env)
    ctx = init_distributed(device="cpu")
    mean = all_reduce_mean(torch.tensor([float(rank + 1), 10.0 * rank]))
    gathered = all_gather_cat(torch.full((rank + 1, 2), float(rank)))
    torch.manual_seed(100 + rank)
    states = gather_rng_states()
    objects = all_gather_objects({"rank": rank, "dets": list(range(rank + 1))})
    torch.save({"ctx": (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed), "mean": mean, "gathered": gathered,
                "rng": [s["torch"] for s in states], "objects": objects},
               os.path.join(out_dir, f"{rank}.pt"))
    cleanup_distributed()


@pytest.mark.parametrize("slurm", [False, True], ids=["torchrun-env", "slurm-env"])
def test_two_gloo_processes_all_reduce(tmp_path, slurm):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), slurm), nprocs=2, join=True)
    for rank in range(2):
        out = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        assert out["ctx"] == (rank, 2, rank == 0, True)
        assert torch.allclose(out["mean"], torch.tensor([1.5, 5.0]))
        assert torch.equal(out["gathered"], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
        assert out["objects"] == [{"rank": 0, "dets": [0]}, {"rank": 1, "dets": [0, 1]}]
        # every rank holds every rank's RNG state, in rank order
        for r in range(2):
            assert torch.equal(out["rng"][r], torch.manual_seed(100 + r).get_state())


def test_single_process_is_not_distributed(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed(device="cpu")
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main) == (0, 1, False, True)
    assert torch.equal(all_reduce_mean(torch.tensor([2.0])), torch.tensor([2.0]))


def test_slurm_nodelist_parsing():
    assert _first_slurm_host("node[03-05,07],gpu1") == "node03"
    assert _first_slurm_host("gpu17") == "gpu17"
    assert _first_slurm_host("gpu17,gpu02") == "gpu17"
    assert _first_slurm_host("lsnode[2-3]") == "lsnode2"
    assert _first_slurm_host("rack[1-2]-n[08,09]") == "rack1-n08"  # every bracket group, text between kept
    assert _first_slurm_host("a[7]b.cluster,c1") == "a7b.cluster"
    assert _first_slurm_host("") == "127.0.0.1"
    with pytest.raises(ValueError, match="without"):
        _first_slurm_host("node[1-2")


@pytest.mark.parametrize("variables, master", [
    ({"SLURM_STEP_NODELIST": "n[4-5]", "SLURM_JOB_NODELIST": "n[1-5]"}, "n4"),  # the step's first node hosts rank 0
    ({"SLURM_JOB_NODELIST": "n[1-5]"}, "n1"),
    ({"SLURM_NODELIST": "gpu[10-11]"}, "gpu10"),
    ({"SLURM_JOB_NODELIST": "n[1-5]", "MASTER_ADDR": "10.0.0.9"}, "10.0.0.9"),  # an explicit address wins
])
def test_two_node_slurm_task_gets_rendezvous_from_the_nodelist(monkeypatch, variables, master):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_NODELIST",
                "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        monkeypatch.setenv(var, "")  # recorded, so that the variables _env_from_slurm sets are undone afterwards
        monkeypatch.delenv(var)
    # task 1 of a 2-node x 1-task step: the second node, local rank 0
    for var, value in {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "1234",
                       **variables}.items():
        monkeypatch.setenv(var, value)
    _env_from_slurm()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("1", "2", "0")
    assert os.environ["MASTER_ADDR"] == master
    assert os.environ["MASTER_PORT"] == "21234"


def test_a_requeued_slurm_job_rendezvous_on_another_port(monkeypatch):
    """``scontrol requeue`` restarts the same job id while its killed run may still hold the old port."""
    ports = []
    for restart in ("0", "1"):
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            monkeypatch.setenv(var, "")
            monkeypatch.delenv(var)
        for var, value in {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "1234",
                           "SLURM_JOB_NODELIST": "n1", "SLURM_RESTART_COUNT": restart}.items():
            monkeypatch.setenv(var, value)
        _env_from_slurm()
        ports.append(int(os.environ["MASTER_PORT"]))
    assert ports[0] == 21234 and ports[1] != ports[0] and 20000 <= ports[1] < 40000


def test_non_finite_loss_names_the_step():
    check_finite(torch.tensor(0.3), step=1)
    with pytest.raises(NonFiniteLossError, match="step 42"):
        check_finite(torch.tensor(float("nan")), step=42)
    with pytest.raises(NonFiniteLossError, match="step 7"):
        check_finite(float("inf"), step=7)


def test_gathered_objects_never_unpickle_code():
    """all_gather_objects reads with a weights-only load: an object that would need code to rebuild is refused,
    on one process as on many."""
    import numpy as np

    out = all_gather_objects(({"score": 0.5, "ids": [1, 2]}, torch.arange(3)))
    assert out[0][0] == {"score": 0.5, "ids": [1, 2]} and torch.equal(out[0][1], torch.arange(3))
    with pytest.raises(TypeError, match="all_gather_objects: .*numpy.*scalar"):
        all_gather_objects({"score": np.float64(0.5)})
