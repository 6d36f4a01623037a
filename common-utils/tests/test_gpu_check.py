"""tools/gpu_check.py (`make gpu-check`): it skips plainly without a GPU, and its pure helpers."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "gpu_check.py"
pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="tools/gpu_check.py is not in this checkout")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the check would really run")
def test_without_cuda_it_says_it_skipped_and_exits_0(tmp_path):
    out = tmp_path / "gpu_check"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["skipped"] == "no CUDA device"
    assert result["torch"] == torch.__version__
    assert "skipped: no CUDA device" in proc.stderr
    assert not out.exists()  # nothing was run or written


def test_unknown_section_is_an_error_naming_it():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "amp,warp"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "unknown section(s) ['warp']" in proc.stderr


def test_judge_losses(gpu_check):
    assert gpu_check.judge_losses([0.7, 0.69, 0.65], must_fall=True) == {"finite": True, "loss_fell": True, "ok": True}
    assert gpu_check.judge_losses([0.7, 0.6, 0.71], must_fall=True)["ok"] is False
    assert gpu_check.judge_losses([0.7, math.nan, 0.5], must_fall=True) == {"finite": False, "loss_fell": False,
                                                                            "ok": False}
    assert gpu_check.judge_losses([0.7], must_fall=True)["ok"] is False  # one epoch cannot show a fall
    assert gpu_check.judge_losses([], must_fall=False)["ok"] is False  # nothing logged
    rising = gpu_check.judge_losses([1.0, 2.0], must_fall=False)
    assert rising == {"finite": True, "loss_fell": None, "ok": True}
    assert gpu_check.judge_losses([1.0, math.inf], must_fall=False)["ok"] is False


def test_read_losses_takes_the_key_in_order_and_reads_non_finite_strings(gpu_check, tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "train/loss": 0.5}, {"step": 1, "val/auc": 0.7}, {"step": 2, "train/loss": "nan"},
            {"step": 3, "train/loss": 0.25}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    losses = gpu_check.read_losses(path, "train/loss")
    assert losses[0] == 0.5 and math.isnan(losses[1]) and losses[2] == 0.25 and len(losses) == 3


def test_fill_and_the_run_tables(gpu_check):
    assert gpu_check.fill(("run_dir={run}/s1", "--opt", "PRECISION", "{precision}"), run="/r", precision="bf16") == \
        ["run_dir=/r/s1", "--opt", "PRECISION", "bf16"]
    projects = {r.project for r in gpu_check.TRAIN_RUNS}
    assert projects == set(gpu_check.DEVICE_OVERRIDES) == set(gpu_check.DATASETS)
    for run in gpu_check.TRAIN_RUNS:
        assert (REPO / run.project).is_dir(), run.project
        args = gpu_check.fill(run.argv + gpu_check.DEVICE_OVERRIDES[run.project], data="D", run="R", precision="fp16",
                              device="cuda")
        assert run.metrics is None or "fp16" in " ".join(args), f"{run.project}/{run.name} does not set the precision"
        for arg in args:  # every config file named in the table exists
            if arg.endswith(".yaml"):
                assert (REPO / run.project / arg).is_file(), f"{run.project}/{arg}"


def test_throughput_uses_the_median(gpu_check):
    assert gpu_check.throughput(64, [1.0, 2.0, 100.0]) == 32.0
