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
