"""No project re-writes the training engine: the step, the scaler and run checkpoints live in common_utils.train.

A project's package code (not its tests or benches) must not call ``scaler.scale``, build a ``GradScaler``, call
``torch.save`` (exports go through ``common_utils.train.save_checkpoint``; run state through ``RunDir``) or clip
gradients for a training step (``OptimStep`` does).
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECTS = {
    "clip-fairness-adapter": "clip_fairness_adapter",
    "audio-xai-prototype": "audio_xai",
    "faap-detr-contrastive": "faap_detr",
    "spai-semantic-spectral": "spai",
    "cascade-fast-filter": "cascade_fast_filter",
}
FORBIDDEN_CALLS = {"scale": "scaler.scale", "GradScaler": "GradScaler(", "save": "torch.save",
                   "clip_grad_norm_": "clip_grad_norm_", "make_grad_scaler": "make_grad_scaler"}


def _engine_calls(path: Path, root: Path = REPO) -> list[str]:
    """``file:line call`` for each call re-writing an engine mechanic (attribute or name calls)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name == "scale" and not (isinstance(func, ast.Attribute) and "scaler" in ast.unparse(func.value)):
            continue
        if name == "save" and not (isinstance(func, ast.Attribute) and ast.unparse(func.value) == "torch"):
            continue
        if name in FORBIDDEN_CALLS:
            found.append((node.lineno, f"{path.relative_to(root)}:{node.lineno} {FORBIDDEN_CALLS[name]}"))
    return [hit for _, hit in sorted(found)]


@pytest.mark.parametrize("folder", sorted(PROJECTS))
def test_project_code_leaves_the_step_and_checkpoints_to_the_engine(folder):
    package = REPO / folder / PROJECTS[folder]
    if not package.is_dir():
        pytest.skip(f"{folder} is not in this checkout")
    offenders = [hit for py in sorted(package.rglob("*.py")) for hit in _engine_calls(py)]
    assert not offenders, "use common_utils.train (OptimStep, RunDir, save_checkpoint):\n" + "\n".join(offenders)


def test_the_check_catches_a_hand_written_step(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nscaler.scale(loss).backward()\ntorch.save(sd, 'x.pth')\n"
                   "torch.nn.utils.clip_grad_norm_(p, 1.0)\nimage.scale(2)\nnp.save('a', b)\n")
    calls = [h.split(" ", 1)[1] for h in _engine_calls(bad, tmp_path)]
    assert calls == ["scaler.scale", "torch.save", "clip_grad_norm_"]
