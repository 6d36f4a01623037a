"""Crafted weights files whose unpickling would run ``os.system`` (it would create a marker file)."""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import torch


class RunsCode:
    """Unpickling this calls ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _legacy_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def make_payloads(folder: Path, marker: Path, suffix: str = ".pth") -> dict[str, Path]:
    """{kind: file}; every file carries tensors as a real checkpoint would, plus the code-running record."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {"model": {"w": torch.ones(2)}, "epoch": 1, "evil": RunsCode(marker)}
    files = {kind: folder / f"{kind}{suffix}" for kind in
             ("zip", "legacy", "legacy-header", "raw-pickle", "torchscript")}
    torch.save(state, files["zip"])
    files["legacy"].write_bytes(_legacy_bytes(state))
    # torch's legacy loader reads its first records (magic number, protocol, sys info) with pickle_module.load:
    # the payload sits where the magic number belongs, the rest is a valid legacy file
    clean = _legacy_bytes({"w": torch.ones(2)})
    magic = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)
    files["legacy-header"].write_bytes(pickle.dumps(RunsCode(marker), protocol=2) + clean[len(magic):])
    files["raw-pickle"].write_bytes(pickle.dumps(state))
    # a TorchScript-looking archive (what torch.jit.load / open_clip's OpenAI loader would open)
    with zipfile.ZipFile(files["torchscript"], "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(RunsCode(marker), protocol=2))
        z.writestr("archive/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("archive/version", "3\n")
    return files
