"""No project imports another project; common_utils imports none of them (each folder stays extractable)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "common-utils": "common_utils",
    "clip-fairness-adapter": "clip_fairness_adapter",
    "audio-xai-prototype": "audio_xai",
    "faap-detr-contrastive": "faap_detr",
    "spai-semantic-spectral": "spai",
    "cascade-fast-filter": "cascade_fast_filter",
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_folder_imports_no_sibling_project(folder):
    root = REPO / folder
    if not root.is_dir():
        pytest.skip(f"{folder} is not in this checkout")
    forbidden = {pkg for name, pkg in PACKAGES.items() if name not in (folder, "common-utils")}
    offenders = [
        f"{py.relative_to(REPO)} imports {sorted(_imported_roots(py) & forbidden)}"
        for py in root.rglob("*.py")
        if ".venv" not in py.parts and _imported_roots(py) & forbidden
    ]
    assert not offenders, "\n".join(offenders)


def test_the_check_catches_a_sibling_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom faap_detr.models import x\nimport spai.config as c\n")
    assert {"faap_detr", "spai"} <= _imported_roots(bad)
