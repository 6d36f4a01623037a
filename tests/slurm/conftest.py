"""Session fixtures for the SLURM job-file tests: a local one-node cluster and the embedded synthetic data."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = ROOT / "tools" / "local_slurm.sh"
SKIP_RC = 77  # tools/local_slurm.sh: SLURM cannot run here (not root, no apt-get, install failed)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running cluster: started by tools/local_slurm.sh (and stopped at the end) unless one is already up."""
    if subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"], capture_output=True).returncode == 0:
        yield  # started by hand before the session: use it and leave it running
        return
    r = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if r.returncode == SKIP_RC:
        pytest.skip(r.stdout.strip().splitlines()[-1])
    if r.returncode != 0:
        pytest.fail(f"tools/local_slurm.sh start failed (rc {r.returncode}):\n{r.stdout}{r.stderr}")
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def workdir():
    """Run dirs, job logs and data of the session. Not pytest's tmp_path: concurrent pytest sessions on one machine
    prune each other's old base temp dirs, and these jobs outlive a few of them."""
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
