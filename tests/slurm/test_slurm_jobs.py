"""Each project's training job file, submitted with sbatch to a real local SLURM cluster.

Two ranks (DDP over gloo): on two nodes, one task each, where the cluster has two (network namespaces); else two tasks
on the one node. Every job must produce its files; the two-rank run must match a one-process run at the same global
batch (or, for trainers that are not batch-invariant, what is invariant); a job cancelled and resubmitted, and a job
requeued by the scheduler, must end with the same weights as the uninterrupted run. What each job needs and must
produce is data in projects.yaml.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
TABLE = yaml.safe_load((Path(__file__).with_name("projects.yaml")).read_text())
DEFAULTS = TABLE.pop("defaults", {})
ALL_JOBS = sorted(p.relative_to(ROOT).as_posix() for ext in ("sbatch", "job") for p in ROOT.glob(f"*/jobs/*.{ext}"))
JOBS = [job for job in ALL_JOBS if job.split("/")[-1].startswith("train")]
RESUME_JOBS = [job for job in JOBS if TABLE.get(job, {}).get("resume_test")]
REQUEUE_JOBS = [job for job in JOBS if TABLE.get(job, {}).get("requeue_test")]
# Fit the job to the test cluster: no GPUs, one core per task; the layout (nodes x tasks) comes from the cluster.
COMMON_ARGS = ["--gpus-per-node=0", "--cpus-per-task=1", "--time=00:15:00"]
TWO_NODES = ["--nodes=2", "--ntasks-per-node=1"]
ONE_NODE_TWO_TASKS = ["--nodes=1", "--ntasks-per-node=2"]
ONE_PROCESS = ["--nodes=1", "--ntasks-per-node=1"]
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "BOOT_FAIL", "DEADLINE"}
# Pending reasons that no amount of waiting fixes on the test cluster.
NEVER_STARTS = {"PartitionConfig", "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit", "ReqNodeNotAvail"}


def spec_of(job: str) -> dict:
    """The job's projects.yaml entry over the table's ``defaults``."""
    return {**DEFAULTS, **TABLE[job]}


def dotted(tree, key: str):
    """``tree["a"]["b"]`` for ``key`` "a.b"."""
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            raise KeyError(f"no {key!r} in the checkpoint (missing {part!r}); fix tests/slurm/projects.yaml")
        tree = tree[part]
    return tree


@dataclass
class Job:
    job_id: str
    run_dir: Path
    log: Path
    fields: dict = field(default_factory=dict)  # the last `scontrol show job` record
    final: str = ""  # the state it ended in (set by the `trained` fixture)

    def state(self) -> str:
        out = subprocess.run(["scontrol", "show", "job", "-o", self.job_id], capture_output=True, text=True).stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        if fields:
            self.fields = fields
        if fields.get("JobState") == "PENDING" and fields.get("Reason") in NEVER_STARTS:
            subprocess.run(["scancel", self.job_id])
            pytest.fail(f"job {self.job_id} cannot start on this cluster: Reason={fields['Reason']}\n{out}")
        return fields.get("JobState", "UNKNOWN")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no job log)"

    def wait(self, timeout: float, until=lambda: False) -> str:
        """Poll until the job ends or ``until()`` holds; scancel and fail after ``timeout`` seconds."""
        t0 = time.monotonic()
        while (state := self.state()) not in DONE_STATES and not until():
            if time.monotonic() - t0 > timeout:
                subprocess.run(["scancel", self.job_id])
                pytest.fail(f"job {self.job_id} still {state} after {timeout}s; log tail:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)
        return state

    def expect(self, state: str, wanted: str = "COMPLETED") -> None:
        if state != wanted:
            text = self.log_text()
            errors = list(dict.fromkeys(line for line in text.splitlines() if re.search(r"Error|error:", line)))
            fields = " ".join(f"{k}={self.fields.get(k)}" for k in ("Reason", "ExitCode", "Restarts", "BatchFlag"))
            pytest.fail(f"job {self.job_id} is {state} ({fields}), expected {wanted}; log {self.log}\nerror lines:\n"
                        + "\n".join(errors[:20]) + f"\nlog tail:\n{text[-2500:]}")


def submit(job: str, run_dir: Path, data: Path, log_dir: Path, layout: list[str], needs: Path | None = None,
           batch: int | None = None, sbatch_args: tuple[str, ...] = ()) -> Job:
    """sbatch the project's job file from its folder on its tiny config (env CONFIG/RUN_DIR/DATA_ROOT/EXTRA_ARGS).

    ``data_root`` and ``extra_args`` in projects.yaml may use {data} (the synthetic data dir), {run_dir} and {needs}
    (the run dir of the job named by ``needs``); ``multinode.args`` are added, and ``batch`` (default: the per-rank
    ``multinode.batch``) is set through ``multinode.batch_arg``.
    """
    spec, project = spec_of(job), ROOT / job.split("/")[0]
    multinode = spec.get("multinode", {})
    fields = {"data": data, "run_dir": run_dir, "needs": needs}
    args = [spec.get("extra_args", "").format(**fields), multinode.get("args", "")]
    if "batch_arg" in multinode:
        args.append(multinode["batch_arg"].format(batch or multinode["batch"]))
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    env.update(PATH=f"{venv_bin}:{os.environ['PATH']}", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])),
               CONFIG=spec["config"], RUN_DIR=str(run_dir), DATA_ROOT=spec.get("data_root", "{data}").format(**fields),
               EXTRA_ARGS=" ".join(a for a in args if a),
               # DDP logs its world size and backend per rank: the evidence that 2 ranks trained over gloo.
               TORCH_DISTRIBUTED_DEBUG="INFO", TORCH_CPP_LOG_LEVEL="INFO")
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["sbatch", "--parsable", *layout, *COMMON_ARGS, *spec.get("sbatch_args", []), *sbatch_args,
           f"--output={log_dir}/slurm-%j.out", str(ROOT / job)]
    r = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"sbatch {job} failed: {r.stderr.strip()}"
    job_id = r.stdout.strip().split(";")[0]
    return Job(job_id, run_dir, log_dir / f"slurm-{job_id}.out")


def metrics_rows(run_dir: Path, spec: dict) -> list[dict]:
    path = run_dir / spec.get("metrics", "metrics.jsonl")
    assert path.is_file(), f"no {path}"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load(run_dir: Path, spec: dict) -> dict:
    return torch.load(run_dir / spec["checkpoint"], map_location="cpu", weights_only=True)


def checkpoint(run_dir: Path, spec: dict) -> tuple[int, dict]:
    """(epoch, model state dict) of the run's checkpoint, loaded weights-only; the keys may be dotted."""
    ckpt = load(run_dir, spec)
    return dotted(ckpt, spec.get("epoch_key", "epoch")), dotted(ckpt, spec.get("model_key", "model"))


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)  # a kept workdir (SLURM_TESTS_KEEP) must not resume an old run
    return path


@pytest.fixture(scope="session")
def layout(slurm_cluster) -> list[str]:
    """Two ranks: one task on each of two nodes where the cluster has two, else two tasks on the one node."""
    return TWO_NODES if slurm_cluster.nodes >= 2 else ONE_NODE_TWO_TASKS


@pytest.fixture(scope="session")
def trained(layout, data_root, workdir):
    """``trained(job) -> Job`` of one uninterrupted two-rank run per job file, shared by the tests (a job with
    ``needs`` starts from the two-rank run of that job). Its final state is in ``Job.final``."""
    runs = {}

    def run(job: str) -> Job:
        if job not in runs:
            spec, needs = spec_of(job), None
            if "needs" in spec:
                first = run(spec["needs"])
                first.expect(first.final)
                needs = first.run_dir
            base = fresh(workdir / job.replace("/", "_"))
            handle = submit(job, base / "run", data_root(spec.get("data", [])), base / "logs", layout, needs)
            handle.final = handle.wait(spec.get("timeout", 300))
            runs[job] = handle
        return runs[job]

    return run


def test_every_training_job_file_has_a_table_entry():
    missing = [job for job in JOBS if job not in TABLE]
    stale = [job for job in TABLE if job not in JOBS]
    assert not missing, f"add these job files to tests/slurm/projects.yaml: {missing}"
    assert not stale, f"projects.yaml lists job files that do not exist: {stale}"
    for job in JOBS:
        multinode = spec_of(job).get("multinode", {})
        assert multinode.get("compare") in ("weights", "invariants"), f"{job}: multinode.compare: weights|invariants"
        if multinode["compare"] == "invariants" or multinode.get("args"):
            assert multinode.get("why"), f"{job}: say in multinode.why why the run is not compared as it is"


@pytest.mark.parametrize("job", ALL_JOBS)
def test_job_output_directory_exists(job):
    """sbatch opens --output before the script runs: a missing directory fails the job (JobLaunchFailure, no log)."""
    text = (ROOT / job).read_text()
    outputs = re.findall(r"^#SBATCH\s+(?:--output|-o)[=\s]+(\S+)", text, flags=re.M)
    for out in outputs:
        folder = (ROOT / job.split("/")[0] / out).parent  # relative to the submit dir, the project folder
        assert folder.is_dir(), f"{job}: --output={out} but {folder} does not exist (commit it, e.g. logs/.gitkeep)"


@pytest.mark.parametrize("job", JOBS)
def test_training_job_trains_with_two_ranks(job, trained, slurm_cluster):
    spec = spec_of(job)
    handle = trained(job)
    handle.expect(handle.final)
    if spec.get("ddp", True):
        log = handle.log_text()
        for rank in (0, 1):
            assert f"[Rank {rank}]: DDP Initialized with" in log, f"rank {rank} never built DDP; log {handle.log}"
        assert "world_size: 2" in log and "backend_name: gloo" in log, f"no DDP over gloo with 2 ranks: {handle.log}"
    if slurm_cluster.nodes >= 2:  # one task per node: the two ranks ran on two nodes, rendezvous over the network
        nodes = subprocess.run(["scontrol", "show", "hostnames", handle.fields.get("NodeList", "")],
                               capture_output=True, text=True).stdout.split()
        assert len(nodes) == 2, f"{job} ran on {handle.fields.get('NodeList')}, not on 2 nodes"
        if spec.get("ddp", True):  # init_distributed took the rendezvous host from the SLURM node list
            assert f"master_addr: {nodes[0]}" in handle.log_text(), f"DDP did not meet on {nodes[0]}: {handle.log}"

    for name in spec.get("files", []):
        assert (handle.run_dir / name).exists(), f"{job}: RUN_DIR lacks {name}"
    rows = metrics_rows(handle.run_dir, spec)
    assert len(rows) == spec["metrics_rows"], f"{job}: {len(rows)} metrics.jsonl rows, expected {spec['metrics_rows']}"
    values = [v for row in rows for v in row.values() if isinstance(v, float)]
    assert values and all(math.isfinite(v) for v in values), f"{job}: non-finite or no metrics: {rows}"

    epoch, weights = checkpoint(handle.run_dir, spec)
    assert epoch == spec["final_epoch"], f"{job}: checkpoint at epoch {epoch}, expected {spec['final_epoch']}"
    tensors = [t for t in weights.values() if torch.is_tensor(t) and t.is_floating_point()]
    assert tensors and all(torch.isfinite(t).all() for t in tensors), f"{job}: no or non-finite weights"


@pytest.mark.parametrize("job", JOBS)
def test_two_nodes_match_one_process_at_the_same_global_batch(job, trained, slurm_cluster, data_root, workdir):
    """The two-rank run against one process whose batch is the two ranks' together (``multinode.reference_batch``,
    default 2 x ``multinode.batch``: DistributedSampler deals a shuffled epoch out round-robin, so the two ranks'
    k-th batches are the one process's k-th batch). ``compare: weights``: allclose within atol/rtol.
    ``compare: invariants`` (trainers that are not batch-invariant, projects.yaml ``why``): the state-dict keys and
    shapes; equal ``same_keys`` prefixes (frozen parts), ``checkpoint_equal`` fields and ``metrics_equal`` columns."""
    if slurm_cluster.nodes < 2:
        pytest.skip(slurm_cluster.one_node_why)
    spec = spec_of(job)
    multinode = spec["multinode"]
    two = trained(job)
    two.expect(two.final)
    needs = trained(spec["needs"]).run_dir if "needs" in spec else None
    base = fresh(workdir / f"{job.replace('/', '_')}-one-process")
    one = submit(job, base / "run", data_root(spec.get("data", [])), base / "logs", ONE_PROCESS, needs,
                 batch=multinode.get("reference_batch", 2 * multinode.get("batch", 0)) or None)
    one.expect(one.wait(spec.get("timeout", 300)))

    (epoch_two, w_two), (epoch_one, w_one) = checkpoint(two.run_dir, spec), checkpoint(one.run_dir, spec)
    assert epoch_two == epoch_one == spec["final_epoch"]
    assert w_two.keys() == w_one.keys(), f"{job}: state-dict keys differ between 2 ranks and 1 process"
    for key in w_two:
        assert w_two[key].shape == w_one[key].shape, f"{job}: {key} shape differs"
    if multinode["compare"] == "weights":
        atol, rtol = float(multinode.get("atol", 1e-5)), float(multinode.get("rtol", 0.0))
        worst = {k: (w_two[k].double() - w_one[k].double()).abs().max().item() for k in w_two
                 if torch.is_tensor(w_two[k]) and w_two[k].numel()}
        off = [k for k in w_two if torch.is_tensor(w_two[k]) and
               not torch.allclose(w_two[k].double(), w_one[k].double(), atol=atol, rtol=rtol)]
        assert not off, (f"{job}: {len(off)} tensors differ beyond atol {atol}: "
                         + ", ".join(f"{k} {worst[k]:.2e}" for k in off[:8]))
    for prefix in multinode.get("same_keys", []):
        keys = [k for k in w_two if k.startswith(prefix)]
        assert keys, f"{job}: no state-dict key starts with {prefix!r} (multinode.same_keys)"
        for k in keys:
            assert torch.equal(w_two[k], w_one[k]), f"{job}: {k} differs; it should not depend on the batch split"
    for key in multinode.get("checkpoint_equal", []):
        a, b = dotted(load(two.run_dir, spec), key), dotted(load(one.run_dir, spec), key)
        assert a == b, f"{job}: checkpoint {key} is {a} after 2 ranks, {b} after 1 process"
    rows_two, rows_one = metrics_rows(two.run_dir, spec), metrics_rows(one.run_dir, spec)
    assert len(rows_two) == len(rows_one)
    for column in multinode.get("metrics_equal", []):
        a, b = [r.get(column) for r in rows_two], [r.get(column) for r in rows_one]
        assert None not in a and a == pytest.approx(b, rel=1e-6), f"{job}: {column} per epoch {a} vs one process {b}"


def requeue_until_pending(job: Job, settle: float = 3.0, attempts: int = 3) -> None:
    """``scontrol requeue`` a running job and wait until it has stayed PENDING for ``settle`` seconds. The killed
    batch script's exit can reach slurmctld after the requeue and end the job FAILED instead (seen on a loaded
    machine); a finished batch job can be requeued again, so that is retried."""
    for _ in range(attempts):
        subprocess.run(["scontrol", "requeue", job.job_id], check=True, capture_output=True)
        deadline, pending_since = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            state = job.state()
            if state == "PENDING":
                pending_since = pending_since or time.monotonic()
                if time.monotonic() - pending_since >= settle:
                    return
            elif state in DONE_STATES:
                break  # requeue lost to the batch script's exit: requeue the finished job
            else:
                pending_since = None
            time.sleep(0.2)
        else:
            pytest.fail(f"job {job.job_id} is {state} 60 s after scontrol requeue, not back in the queue")
    pytest.fail(f"job {job.job_id} ended {state} after each of {attempts} requeues")


def interrupted_then_finished(job: str, trained, layout, data_root, workdir, interrupt: str) -> Job:
    """Start the job, interrupt it once its first checkpoint exists (``scancel`` + resubmit, or ``scontrol requeue``
    where the scheduler restarts the same job id), let it finish; returns the finished run."""
    spec = spec_of(job)
    base = fresh(workdir / f"{job.replace('/', '_')}-{interrupt}")
    run_dir, data, timeout = base / "run", data_root(spec.get("data", [])), spec.get("timeout", 300)
    needs = trained(spec["needs"]).run_dir if "needs" in spec else None
    ckpt_path = run_dir / spec["checkpoint"]
    first = submit(job, run_dir, data, base / "logs", layout, needs, sbatch_args=("--open-mode=append",))
    first.expect(first.wait(timeout, until=ckpt_path.exists), "RUNNING")
    if interrupt == "scancel":
        subprocess.run(["scancel", first.job_id], check=True)
        first.expect(first.wait(60), "CANCELLED")
    else:
        requeue_until_pending(first)
        # SLURM holds a requeued job for two minutes (Reason=BeginTime); release it once its nodes have finished
        # cleaning up the killed run (a start on a node still completing fails the launch, and the job with it).
        deadline = time.monotonic() + 120
        while (nodes := set(subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
                            .stdout.split())) != {"idle"}:
            if time.monotonic() > deadline:
                pytest.fail(f"nodes still {sorted(nodes)} 120 s after scontrol requeue of job {first.job_id}")
            time.sleep(0.5)
        subprocess.run(["scontrol", "update", f"jobid={first.job_id}", "StartTime=now"], check=True,
                       capture_output=True)
    interrupted_at = checkpoint(run_dir, spec)[0]
    assert interrupted_at < spec["final_epoch"], (
        f"the job finished (epoch {interrupted_at}) before it was interrupted; give its tiny run more epochs")
    if interrupt == "scancel":
        second = submit(job, run_dir, data, base / "logs", layout, needs)
    else:
        second = first  # the scheduler runs the same job id again
    second.expect(second.wait(timeout))
    if interrupt == "requeue":
        assert int(second.fields.get("Restarts", 0)) >= 1, f"job {second.job_id} was not restarted: {second.fields}"
    return second


def assert_same_run(job: str, resumed: Job, uninterrupted: Job, how: str) -> None:
    spec = spec_of(job)
    (_, w_resumed), (_, w_ref) = checkpoint(resumed.run_dir, spec), checkpoint(uninterrupted.run_dir, spec)
    assert w_resumed.keys() == w_ref.keys()
    for key, tensor in w_ref.items():
        assert torch.equal(w_resumed[key], tensor), f"{job}: {key} differs after {how} + resume"
    # A resumed run appends the remaining epochs only; a restart from scratch would log the first epoch twice.
    key = spec.get("metrics_epoch_key", "step")
    epochs = [[row[key] for row in metrics_rows(d, spec)] for d in (resumed.run_dir, uninterrupted.run_dir)]
    assert epochs[0] == epochs[1], f"{job}: logged epochs {epochs[0]} after {how} + resume, {epochs[1]} uninterrupted"


@pytest.mark.parametrize("job", RESUME_JOBS)
def test_cancelled_job_resumes_to_the_same_weights(job, trained, layout, data_root, workdir):
    """scancel once the first epoch's checkpoint exists, resubmit: same final weights as the uninterrupted run."""
    reference = trained(job)
    reference.expect(reference.final)
    resumed = interrupted_then_finished(job, trained, layout, data_root, workdir, "scancel")
    assert_same_run(job, resumed, reference, "scancel")


@pytest.mark.parametrize("job", REQUEUE_JOBS)
def test_requeued_job_resumes_to_the_same_weights(job, trained, layout, data_root, workdir):
    """``scontrol requeue`` (what preemption does: kill, back to the queue, same job id, SLURM_RESTART_COUNT + 1) once
    the first checkpoint exists: the job's `--resume auto` continues from it to the uninterrupted run's weights."""
    reference = trained(job)
    reference.expect(reference.final)
    resumed = interrupted_then_finished(job, trained, layout, data_root, workdir, "requeue")
    assert_same_run(job, resumed, reference, "requeue")
