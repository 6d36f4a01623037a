import os
import subprocess
import sys

from common_utils.bench import pin_threads


def test_pin_threads_reads_both_spellings(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.setenv("MKL_NUM_THREADS", "8")
    assert pin_threads(["bench.py"]) == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    assert pin_threads(["bench.py", "--threads", "3"]) == 3 and os.environ["MKL_NUM_THREADS"] == "3"
    assert pin_threads(["bench.py", "--threads=2"]) == 2 and os.environ["OMP_NUM_THREADS"] == "2"


def test_the_module_does_not_import_torch():
    code = "import sys, common_utils.bench; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_medians_warm_up_then_interleave_the_sides():
    from types import SimpleNamespace

    from common_utils.bench import clock, median_seconds, medians

    cpu = SimpleNamespace(type="cpu")
    calls, lines = [], []
    sec = medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, cpu, 1, warmup=2,
                  log=lines.append)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-ups first, then rounds a, b, a, b, ...
    assert set(sec) == {"a", "b"} and all(v >= 0 for v in sec.values())
    assert len(lines) == 3 and lines[0].startswith("round 1/3: a ")
    assert clock(cpu, 1)[1] == "process CPU time (1 thread)" and clock(cpu, 2)[1] == "wall time"
    busy = median_seconds(lambda: sum(i * i for i in range(200_000)), 3, cpu, 1)
    idle = median_seconds(lambda: None, 3, cpu, 1)
    assert busy > 10 * idle
