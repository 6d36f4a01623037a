"""Session fixtures for the SLURM job-file tests: a local cluster (two nodes where this machine allows it) and the
embedded synthetic data."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = ROOT / "tools" / "local_slurm.sh"
SKIP_RC = 77  # tools/local_slurm.sh: SLURM (or its multi-node mode) cannot run here; the last line says why


@dataclass(frozen=True)
class Cluster:
    nodes: int
    one_node_why: str | None  # why the two-node mode is not available (None when it is)


def _cluster_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def _last_line(r: subprocess.CompletedProcess) -> str:
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit status {r.returncode}"


def _node_count() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout
    return len(set(out.split()))


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running cluster: two nodes (`tools/local_slurm.sh start --nodes 2`) where network namespaces are
    available, else one node with the reason kept for the two-node tests. Stopped at the end unless it was already
    up before the session (then used as it is)."""
    if _cluster_script("status").returncode == 0:
        nodes = _node_count()
        yield Cluster(nodes, None if nodes >= 2 else
                      "the cluster was already running with one node; stop it (tools/local_slurm.sh stop) so the "
                      "tests can start the two-node mode")
        return
    one_node_why = None
    r = _cluster_script("start", "--nodes", "2")
    if r.returncode == SKIP_RC:
        one_node_why = f"two-node mode unavailable: {_last_line(r)}"
        _cluster_script("stop")  # whatever the two-node attempt left
        r = _cluster_script("start")
        if r.returncode == SKIP_RC:
            pytest.skip(_last_line(r))
    if r.returncode != 0:
        out = r.stdout + r.stderr
        _cluster_script("stop")
        pytest.fail(f"tools/local_slurm.sh start failed (rc {r.returncode}):\n{out}")
    try:
        yield Cluster(_node_count(), one_node_why)
    finally:
        _cluster_script("stop", timeout=300)


@pytest.fixture(scope="session")
def workdir():
    """Run dirs, job logs and data of the session. Not pytest's tmp_path: concurrent pytest sessions on one machine
    prune each other's old base temp dirs, and these jobs outlive a few of them. SLURM_TESTS_KEEP=DIR keeps them
    in DIR instead (for looking at a failed job's run)."""
    keep = os.environ.get("SLURM_TESTS_KEEP")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep).resolve()
        return
    path = Path(tempfile.mkdtemp(prefix="slurm-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def data_root(workdir):
    """``ensure(names) -> DATA_ROOT`` holding ``DATA_ROOT/<name>/``: the embedded synthetic datasets, demo size."""
    root = workdir / "data"

    def ensure(names) -> Path:
        for name in names:
            if not (root / name).is_dir():
                subprocess.run([sys.executable, "-m", "common_utils.synthetic", name, "--out", str(root / name)],
                               check=True, timeout=300, stdout=subprocess.DEVNULL)
        return root

    return ensure
