"""The project's config: configs/stage1.yaml is the schema; a file and dotted ``key=value`` overrides update it."""
from __future__ import annotations

from pathlib import Path

import torch
from common_utils.train import DistContext, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "stage1.yaml"
# Keys whose default is not null but which may be set to null: model.pretrained_file (no ImageNet weights file; only
# with model.pretrained=false) and cascade.select_split (the operating point chosen on cascade.split, in-sample).
# Keys whose default is null (model.test_size, cascade.stage2_*, cascade.stage1_ms) take any value already.
NULLABLE = ("model.pretrained_file", "cascade.select_split")


def get_config(path=None, overrides=()):
    """Config = configs/stage1.yaml, updated by `path` (if given) and dotted `key=value` overrides."""
    return load_config(path or DEFAULT_CONFIG, DEFAULT_CONFIG, overrides=list(overrides), nullable=NULLABLE)


def resolve_path(path, root) -> Path:
    """`path` if absolute, else relative to `root`."""
    path = Path(path)
    return path if path.is_absolute() else Path(root) / path


def local_context(device: str = "auto") -> DistContext:
    """A one-process context on the config's ``device`` (auto | cpu | cuda) for evaluation and inference."""
    if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
    dev = torch.device(device if str(device).startswith("cuda") else "cuda") if use_cuda else torch.device("cpu")
    return DistContext(rank=0, world_size=1, local_rank=0, device=dev, is_main=True, distributed=False)
