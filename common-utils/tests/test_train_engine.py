"""The training engine: OptimStep, wrap_model/adamw/build_loader, run state, run directory, kill -9 and resume."""
import errno
import json
import os
import socket
import stat

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from common_utils.train import (
    CheckpointWriteError,
    DistContext,
    DivergenceError,
    NonFiniteLossError,
    OptimStep,
    RunDir,
    RunStateError,
    TrainState,
    adamw,
    build_loader,
    check_finite_outputs,
    example,
    init_distributed,
    load_config,
    read_run_state,
    resolve_num_workers,
    save_checkpoint,
    wrap_model,
)
from common_utils.train.run_state import RUN_STATE_KEYS
from common_utils.train.testing import metrics_rows, run_forked

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), is_main=True, distributed=False)


def _data(n=12, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randn(n, generator=g)


def _fit(batches, accum, trailing="mean", grad_clip=0.0, precision="fp32", epochs=1):
    """Train a linear model on ``batches`` (list of (x, y)); returns (weights, logs)."""
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    step = OptimStep(opt, device="cpu", precision=precision, grad_clip=grad_clip, accum_steps=accum,
                     trailing=trailing)
    logs = []
    for epoch in range(epochs):
        step.begin_epoch(epoch, len(batches))
        for x, y in batches:
            with step.autocast():
                loss = F.mse_loss(net(x).squeeze(1).float(), y)
            logs.append(step(loss))
    return torch.cat([p.detach().flatten() for p in net.parameters()]), logs


def test_accumulation_equals_one_step_on_the_whole_group():
    x, y = _data(8)
    small = [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)]
    w_acc, logs = _fit(small, accum=4)
    w_big, _ = _fit([(x, y)], accum=1)
    assert torch.allclose(w_acc, w_big, atol=1e-6)
    assert [lg["stepped"] for lg in logs] == [False, False, False, True]
    assert logs[-1]["step"] == 1


def test_trailing_partial_group_is_a_mean_step_or_dropped_by_the_upstream_rule():
    x, y = _data(10)
    batches = [(x[i:i + 2], y[i:i + 2]) for i in range(0, 10, 2)]  # 5 batches, accum 2 -> groups 2, 2, 1
    w_mean, logs = _fit(batches, accum=2)
    assert [lg["stepped"] for lg in logs] == [False, True, False, True, True]
    w_ref, _ = _fit([(x[0:4], y[0:4]), (x[4:8], y[4:8]), (x[8:10], y[8:10])], accum=1)
    assert torch.allclose(w_mean, w_ref, atol=1e-6)

    w_drop, logs = _fit(batches, accum=2, trailing="drop")
    assert [lg["stepped"] for lg in logs] == [False, True, False, True, False]
    w_ref2, _ = _fit([(x[0:4], y[0:4]), (x[4:8], y[4:8])], accum=1)
    assert torch.allclose(w_drop, w_ref2, atol=1e-6)
    step = OptimStep(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1), device="cpu", accum_steps=2,
                     trailing="drop")
    assert step.steps_per_epoch(5) == 2
    assert OptimStep(step.optimizer, device="cpu", accum_steps=2).steps_per_epoch(5) == 3


def test_clipping_reports_the_pre_clip_norm_and_bounds_the_update():
    x, y = _data(4)
    _, logs = _fit([(x * 100, y)], accum=1, grad_clip=0.5)
    assert logs[0]["grad_norm"] > 0.5
    w0, _ = _fit([(x * 100, y)], accum=1, grad_clip=0.0, epochs=0)
    w1, _ = _fit([(x * 100, y)], accum=1, grad_clip=0.5)
    assert (w1 - w0).norm() <= 0.1 * 0.5 + 1e-6  # lr * max_norm


def test_non_finite_loss_names_epoch_batch_and_step():
    net = torch.nn.Linear(2, 1)
    step = OptimStep(torch.optim.SGD(net.parameters(), lr=1), device="cpu", accum_steps=1, name="generator")
    step.begin_epoch(2, 5)
    step(net(torch.ones(1, 2)).sum())
    with pytest.raises(NonFiniteLossError, match=r"generator loss nan at epoch 3, batch 2/5 \(optimizer step 2\)"):
        step(torch.tensor(float("nan"), requires_grad=True))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_lower_the_loss(precision):
    x, y = _data(32)
    _, logs = _fit([(x, y)] * 6, accum=1, precision=precision)
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert ("scale" in logs[-1]) == (precision == "fp16")


def test_validation_divergence_is_reported_as_divergence():
    with pytest.raises(DivergenceError, match="training diverged: 1 of 3 validation outputs .* after epoch 4"):
        check_finite_outputs(torch.tensor([0.1, float("inf"), 0.3]), 4)


def test_adamw_is_fused_on_cpu_and_build_loader_caps_workers(monkeypatch):
    opt = adamw(torch.nn.Linear(3, 3).parameters(), lr=1e-3)
    assert opt.defaults["fused"] is True
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert resolve_num_workers(8) == 1 and resolve_num_workers(0) == 0
    loader = build_loader(torch.utils.data.TensorDataset(torch.zeros(4)), 2, CPU, num_workers=8)
    assert loader.num_workers == 1 and loader.persistent_workers and not loader.pin_memory
    with pytest.raises(ValueError, match="num_workers"):
        resolve_num_workers(-1)


# -- run directory and run state ---------------------------------------------------------------------------------
def _example(tmp_path, name, *args, env=None, epochs=3):
    """Exit code of the example trainer run in a forked process: 0, 1 (an exception), -9 (SIGKILL)."""
    return run_forked(example.main, [f"run_dir={tmp_path / name}", f"train.epochs={epochs}", *args], env)


def _example_error(tmp_path, name, *args, epochs=3) -> str:
    with pytest.raises(Exception) as info:
        example.main([f"run_dir={tmp_path / name}", f"train.epochs={epochs}", *args])
    return str(info.value)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("point", ["before_checkpoint", "after_checkpoint", "after_metrics"])
def test_kill_9_and_resume_gives_the_uninterrupted_metrics_and_weights(tmp_path, point):
    assert _example(tmp_path, "ref", epochs=4) == 0
    assert _example(tmp_path, "run", epochs=4, env={"COMMON_UTILS_FAULT": f"{point}:2"}) == -9
    assert _example(tmp_path, "run", "--resume", "auto", epochs=4) == 0
    assert metrics_rows(tmp_path / "run" / "metrics.jsonl") == metrics_rows(tmp_path / "ref" / "metrics.jsonl")
    a, b = read_run_state(tmp_path / "ref" / "last.pth"), read_run_state(tmp_path / "run" / "last.pth")
    assert all(torch.equal(a["models"]["model"][k], b["models"]["model"][k]) for k in a["models"]["model"])
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_run_state_has_fixed_keys_completed_epochs_and_the_config(tmp_path):
    assert _example(tmp_path, "run", epochs=2) == 0
    state = read_run_state(tmp_path / "run" / "last.pth")
    assert tuple(state) == RUN_STATE_KEYS
    assert state["epoch"] == 2 and [r["epoch"] for r in state["history"]] == [1, 2]
    assert state["config"]["train"]["epochs"] == 2 and state["steps"] == {"model": 10}
    assert len(state["rng"]) == 1 and state["world_size"] == 1


def test_a_run_refuses_another_runs_directory_unless_resumed_or_overwritten(tmp_path):
    assert _example(tmp_path, "run", epochs=1) == 0
    err = _example_error(tmp_path, "run", epochs=1)
    assert "holds another run (last.pth, metrics.jsonl)" in err and "--resume auto" in err and "--overwrite" in err
    assert _example(tmp_path, "run", "--overwrite", epochs=2) == 0
    assert [r["epoch"] for r in _rows(tmp_path / "run" / "metrics.jsonl")] == [1, 2]
    # a finished run resumed does nothing more and keeps its files
    before = (tmp_path / "run" / "last.pth").read_bytes()
    assert _example(tmp_path, "run", "--resume", "auto", epochs=2) == 0
    assert (tmp_path / "run" / "last.pth").read_bytes() == before


def test_resume_from_a_model_export_says_which_file_to_pass(tmp_path):
    save_checkpoint({"model": {"w": torch.zeros(1)}, "epoch": 3}, tmp_path / "best_model.pth")
    err = _example_error(tmp_path, "run", "--resume", str(tmp_path / "best_model.pth"))
    assert "is not a run-state checkpoint" in err and "last.pth (or --resume auto)" in err


def test_stale_temp_files_are_removed_and_checkpoints_get_the_usual_file_mode(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".last.pth.abc123.tmp").write_bytes(b"half a checkpoint")
    RunDir(run_dir, CPU)
    assert not (run_dir / ".last.pth.abc123.tmp").exists()
    save_checkpoint({"w": torch.zeros(2)}, run_dir / "x.pth")
    (run_dir / "y.txt").write_text("other output")
    assert stat.S_IMODE((run_dir / "x.pth").stat().st_mode) == stat.S_IMODE((run_dir / "y.txt").stat().st_mode)


def test_load_run_state_refuses_a_state_of_another_trainer(tmp_path):
    assert _example(tmp_path, "run", epochs=1) == 0
    net = torch.nn.Linear(8, 16)
    run = RunDir(tmp_path / "run", CPU, resume="auto")
    with pytest.raises(RunStateError, match="'models' holds \\['model'\\] but this run has \\['generator'\\]"):
        run.resume(TrainState(models={"generator": net}))


def test_disk_full_names_the_path_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"epoch": 1}, path)
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(CheckpointWriteError, match=f"{path}: disk full while writing the checkpoint; the previous"):
        save_checkpoint({"epoch": 2, "w": torch.zeros(100)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


# -- DDP ---------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    ctx = init_distributed("cpu")
    x, y = _data(16)
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 1)
    model = wrap_model(net, ctx)
    step = OptimStep(torch.optim.SGD(net.parameters(), lr=0.1), device="cpu", model=model, accum_steps=2)
    mine = list(range(rank, 16, world))  # a DistributedSampler's interleaving, 2 per batch, 4 batches
    step.begin_epoch(0, 4)
    for b in range(4):
        idx = mine[2 * b:2 * b + 2]
        with step.autocast():
            loss = F.mse_loss(model(x[idx]).squeeze(1), y[idx])
        step(loss)
    torch.save(net.state_dict(), os.path.join(out_dir, f"{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_with_accumulation_equals_one_process_at_the_same_global_batch(tmp_path):
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    x, y = _data(16)
    # rank r takes samples r, r+2, ...; batches of 2, groups of 2 batches: the first optimizer step sees samples
    # {0, 2, 4, 6} on rank 0 and {1, 3, 5, 7} on rank 1, i.e. the mean over samples 0..7, as one process would
    batches = [(x[0:8], y[0:8]), (x[8:16], y[8:16])]
    w_single, _ = _fit(batches, accum=1)
    for rank in range(2):
        sd = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        w = torch.cat([sd["weight"].flatten(), sd["bias"].flatten()])
        assert torch.allclose(w, w_single, atol=1e-6)


def test_config_vocabulary_errors_name_the_key(tmp_path):
    schema = example.DEFAULTS
    with pytest.raises(Exception, match="'train.accum_steps' must be an integer like its default 2, got 2.5"):
        load_config(None, schema, ["run_dir=x", "train.accum_steps=2.5"])
    with pytest.raises(Exception, match=r"required config key\(s\) \['run_dir'\] not set"):
        load_config(None, schema, [])
