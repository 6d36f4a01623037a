"""Each project's training job file, submitted with sbatch to a real one-node SLURM cluster (2 tasks, DDP over gloo).

What each job must produce is data in projects.yaml; a cancelled and resubmitted job must end with the same weights.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from common_utils.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TABLE = yaml.safe_load((Path(__file__).with_name("projects.yaml")).read_text())
ALL_JOBS = sorted(p.relative_to(ROOT).as_posix() for ext in ("sbatch", "job") for p in ROOT.glob(f"*/jobs/*.{ext}"))
JOBS = [job for job in ALL_JOBS if job.split("/")[-1].startswith("train")]
RESUME_JOBS = [job for job in JOBS if TABLE.get(job, {}).get("resume_test")]
# Fit the job to the test node: 2 tasks on one node, no GPUs, one core per task.
NODE_ARGS = ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1", "--time=00:15:00"]
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "BOOT_FAIL", "DEADLINE"}
# Pending reasons that no amount of waiting fixes on a one-node cluster.
NEVER_STARTS = {"PartitionConfig", "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit", "ReqNodeNotAvail"}


@dataclass
class Job:
    job_id: str
    run_dir: Path
    log: Path

    def state(self) -> str:
        out = subprocess.run(["scontrol", "show", "job", "-o", self.job_id], capture_output=True, text=True).stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        if fields.get("JobState") == "PENDING" and fields.get("Reason") in NEVER_STARTS:
            subprocess.run(["scancel", self.job_id])
            pytest.fail(f"job {self.job_id} cannot start on this node: Reason={fields['Reason']}\n{out}")
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
            pytest.fail(f"job {self.job_id} is {state}, expected {wanted}; log {self.log}\nerror lines:\n"
                        + "\n".join(errors[:20]) + f"\nlog tail:\n{text[-2500:]}")


def submit(job: str, run_dir: Path, data: Path, log_dir: Path, needs: Path | None = None) -> Job:
    """sbatch the project's job file from its folder on its tiny config (env CONFIG/RUN_DIR/DATA_ROOT/EXTRA_ARGS).

    ``data_root`` and ``extra_args`` in projects.yaml may use {data} (the synthetic data dir), {run_dir} and {needs}
    (the run dir of the job named by ``needs``).
    """
    spec, project = TABLE[job], ROOT / job.split("/")[0]
    fields = {"data": data, "run_dir": run_dir, "needs": needs}
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])),
               CONFIG=spec["config"], RUN_DIR=str(run_dir), DATA_ROOT=spec.get("data_root", "{data}").format(**fields),
               EXTRA_ARGS=spec.get("extra_args", "").format(**fields),
               # DDP logs its world size and backend per rank: the evidence that 2 ranks trained over gloo.
               TORCH_DISTRIBUTED_DEBUG="INFO", TORCH_CPP_LOG_LEVEL="INFO")
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["sbatch", "--parsable", *NODE_ARGS, *spec.get("sbatch_args", []), f"--output={log_dir}/slurm-%j.out",
           str(ROOT / job)]
    r = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"sbatch {job} failed: {r.stderr.strip()}"
    job_id = r.stdout.strip().split(";")[0]
    return Job(job_id, run_dir, log_dir / f"slurm-{job_id}.out")


def metrics_rows(run_dir: Path, spec: dict) -> list[dict]:
    path = run_dir / spec.get("metrics", "metrics.jsonl")
    assert path.is_file(), f"no {path}"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def checkpoint(run_dir: Path, spec: dict) -> tuple[int, dict]:
    """(epoch, model state dict) of the run's checkpoint, loaded weights-only; ``epoch_key`` may be dotted."""
    ckpt = load_checkpoint(run_dir / spec["checkpoint"])
    epoch = ckpt
    for key in spec.get("epoch_key", "epoch").split("."):
        epoch = epoch[key]
    return epoch, ckpt[spec.get("model_key", "model")]


@pytest.fixture(scope="session")
def trained(slurm_cluster, data_root, workdir):
    """``trained(job) -> (Job, final state)`` for one uninterrupted run per job file, shared by the tests."""
    runs = {}

    def run(job: str):
        if job not in runs:
            spec, needs = TABLE[job], None
            if "needs" in spec:
                first, state = run(spec["needs"])
                first.expect(state)
                needs = first.run_dir
            base = workdir / job.replace("/", "_")
            handle = submit(job, base / "run", data_root(spec.get("data", [])), base / "logs", needs)
            runs[job] = handle, handle.wait(spec.get("timeout", 300))
        return runs[job]

    return run


def test_every_training_job_file_has_a_table_entry():
    missing = [job for job in JOBS if job not in TABLE]
    stale = [job for job in TABLE if job not in JOBS]
    assert not missing, f"add these job files to tests/slurm/projects.yaml: {missing}"
    assert not stale, f"projects.yaml lists job files that do not exist: {stale}"


@pytest.mark.parametrize("job", ALL_JOBS)
def test_job_output_directory_exists(job):
    """sbatch opens --output before the script runs: a missing directory fails the job (JobLaunchFailure, no log)."""
    text = (ROOT / job).read_text()
    outputs = re.findall(r"^#SBATCH\s+(?:--output|-o)[=\s]+(\S+)", text, flags=re.M)
    for out in outputs:
        folder = (ROOT / job.split("/")[0] / out).parent  # relative to the submit dir, the project folder
        assert folder.is_dir(), f"{job}: --output={out} but {folder} does not exist (commit it, e.g. logs/.gitkeep)"


@pytest.mark.parametrize("job", JOBS)
def test_training_job_trains_with_two_ranks(job, trained):
    if job not in TABLE:
        pytest.fail(f"{job} has no entry in tests/slurm/projects.yaml")
    spec = TABLE[job]
    handle, state = trained(job)
    handle.expect(state)
    if spec.get("ddp", True):
        log = handle.log_text()
        for rank in (0, 1):
            assert f"[Rank {rank}]: DDP Initialized with" in log, f"rank {rank} never built DDP; log {handle.log}"
        assert "world_size: 2" in log and "backend_name: gloo" in log, f"no DDP over gloo with 2 ranks: {handle.log}"

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


@pytest.mark.parametrize("job", RESUME_JOBS)
def test_cancelled_job_resumes_to_the_same_weights(job, trained, data_root, workdir):
    """scancel once the first epoch's checkpoint exists, resubmit: same final weights as the uninterrupted run."""
    spec = TABLE[job]
    reference, state = trained(job)
    reference.expect(state)
    base = workdir / f"{job.replace('/', '_')}-resume"
    run_dir, data, timeout = base / "run", data_root(spec.get("data", [])), spec.get("timeout", 300)
    ckpt_path = run_dir / spec["checkpoint"]

    needs = trained(spec["needs"])[0].run_dir if "needs" in spec else None
    first = submit(job, run_dir, data, base / "logs", needs)
    first.expect(first.wait(timeout, until=ckpt_path.exists), "RUNNING")
    subprocess.run(["scancel", first.job_id], check=True)
    first.expect(first.wait(60), "CANCELLED")
    cancelled_at = checkpoint(run_dir, spec)[0]
    assert cancelled_at < spec["final_epoch"], (
        f"the job finished (epoch {cancelled_at}) before scancel; give its tiny run more epochs via extra_args")

    second = submit(job, run_dir, data, base / "logs", needs)
    second.expect(second.wait(timeout))
    (_, resumed), (_, uninterrupted) = checkpoint(run_dir, spec), checkpoint(reference.run_dir, spec)
    assert resumed.keys() == uninterrupted.keys()
    for key, tensor in uninterrupted.items():
        assert torch.equal(resumed[key], tensor), f"{job}: {key} differs after cancel + resume"
    # A resumed run appends the remaining epochs only; a restart from scratch would log epoch 0 twice.
    steps = [[row["step"] for row in metrics_rows(d, spec)] for d in (run_dir, reference.run_dir)]
    assert steps[0] == steps[1], f"{job}: logged steps {steps[0]} after resume, {steps[1]} uninterrupted"
