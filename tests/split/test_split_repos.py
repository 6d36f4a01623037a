"""`make split-repos`: six standalone repositories split from the current history, a superproject bundling them as
submodules, and one project's test suite passing inside its standalone clone.

The suite run is audio-xai-prototype's, the quickest of the five (about 20 s of CPU; the others take 25-75 s), in full.
The clone installs the way its README says (``pip install ... -e ./common-utils -e .``), offline: ``--no-deps
--no-index`` into a fresh virtualenv that sees the third-party packages of this repository's .venv (not its
editable installs of the monorepo folders), so the code that runs is the clone's.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "split_repos.py"
PROJECT, PACKAGE = "audio-xai-prototype", "audio_xai"
COMMON = "common-utils"
SUPER = "media-forensics-toolkit"
# Local (file) submodule URLs are refused by default since git 2.38.1 (CVE-2022-39253); allow them for these clones.
CLONE = ["git", "-c", "protocol.file.allow=always", "clone", "-q", "--recurse-submodules"]


def git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def folders() -> list[str]:
    names = git("ls-tree", "--name-only", "HEAD", cwd=ROOT).split()
    return sorted(n for n in names if subprocess.run(["git", "cat-file", "-e", f"HEAD:{n}/pyproject.toml"],
                                                     cwd=ROOT, capture_output=True).returncode == 0)


def split(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--out", str(out), *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("split") / "repos"
    r = split(out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("folder", [f for f in folders() if f != COMMON])
def test_project_pytest_collects_only_its_own_tests(folder):
    """A standalone clone holds the common-utils submodule: a bare `pytest` must not collect its tests too (their
    conftest would shadow the project's)."""
    config = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())
    testpaths = config.get("tool", {}).get("pytest", {}).get("ini_options", {}).get("testpaths")
    assert testpaths == ["tests"], f"{folder}/pyproject.toml: set [tool.pytest.ini_options] testpaths = [\"tests\"]"


def test_there_are_six_folders_to_split():
    assert COMMON in folders() and len(folders()) == 6, folders()


@pytest.mark.parametrize("folder", folders())
def test_repository_keeps_the_folder_and_its_history(repos, folder):
    repo = repos / folder
    # main = the folder's split history + one standalone commit on top
    assert git("rev-parse", "main^^{tree}", cwd=repo) == git("rev-parse", f"HEAD:{folder}", cwd=ROOT), \
        f"{folder}: the split tree differs from the folder at HEAD"
    # every commit that changed the folder is there (merges aside: the split keeps only those that join changes)
    assert git("rev-list", "--count", "--no-merges", "main^", cwd=repo) == git(
        "rev-list", "--count", "--no-merges", "--full-history", "HEAD", "--", folder, cwd=ROOT), \
        f"{folder}: history not kept"
    assert (repo / "constraints.txt").read_text() == (ROOT / "constraints.txt").read_text()
    assert git("status", "--porcelain", cwd=repo) == "", f"{folder}: checkout is not clean"
    if folder == COMMON:
        assert not (repo / ".gitmodules").exists()
    else:  # common-utils as a submodule at the common-utils repository's commit
        assert (repo / ".gitmodules").read_text() == (
            f'[submodule "{COMMON}"]\n\tpath = {COMMON}\n\turl = ../{COMMON}\n')
        gitlink = git("ls-tree", "main", COMMON, cwd=repo).split()
        assert gitlink[:3] == ["160000", "commit", git("rev-parse", "main", cwd=repos / COMMON)]


def test_superproject_bundles_every_repository(repos):
    sup = repos / SUPER
    names = folders()
    assert sorted(git("ls-tree", "--name-only", "main", cwd=sup).split()) == sorted([".gitmodules", "README.md",
                                                                                      *names])
    modules = git("config", "-f", ".gitmodules", "--get-regexp", r"submodule\..*\.url", cwd=sup).splitlines()
    assert sorted(modules) == sorted(f"submodule.{n}.url ../{n}" for n in names)
    for name in names:
        assert git("ls-tree", "main", name, cwd=sup).split()[2] == git("rev-parse", "main", cwd=repos / name)


def tree_of(repo: Path) -> tuple[dict, dict]:
    """({path: blob} of the files, {path: commit} of the submodules) of ``main``."""
    files, links = {}, {}
    for line in git("ls-tree", "-r", "main", cwd=repo).splitlines():
        meta, path = line.split("\t", 1)
        mode, kind, sha = meta.split()
        (links if kind == "commit" else files)[path] = sha
    return files, links


def test_a_rerun_updates_the_repositories_so_that_pushes_fast_forward(repos, tmp_path):
    if subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD~1"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("no HEAD~1 in this (shallow) clone")
    out = tmp_path / "out"
    first = split(out, "--ref", "HEAD~1")
    assert first.returncode == 0, first.stderr
    names = [*folders(), SUPER]
    before = {n: git("rev-parse", "main", cwd=out / n) for n in names}
    update = split(out)
    assert update.returncode == 0, update.stderr
    after = {n: git("rev-parse", "main", cwd=out / n) for n in names}
    for name in names:
        repo = out / name
        assert subprocess.run(["git", "merge-base", "--is-ancestor", before[name], "main"], cwd=repo).returncode == 0
        files, links = tree_of(repo)
        assert files == tree_of(repos / name)[0], f"{name}: the update's files differ from a fresh split of HEAD"
        assert links == {path: after[path] for path in links}, f"{name}: submodules not at the updated repositories"
        if name != SUPER:  # first parent: the folder's split history at HEAD
            assert git("rev-parse", "main^1", cwd=repo) == git("rev-parse", "main^1", cwd=repos / name)
    again = split(out)
    assert again.returncode == 0, again.stderr
    assert {n: git("rev-parse", "main", cwd=out / n) for n in names} == after, "an unchanged rerun made commits"

    (out / "notes.txt").write_text("x")
    refused = split(out)
    assert refused.returncode == 1 and "notes.txt" in refused.stderr
    (out / "notes.txt").unlink()
    with open(out / PROJECT / "README.md", "a") as f:
        f.write("local edit\n")
    refused = split(out)
    assert refused.returncode == 1 and "uncommitted changes" in refused.stderr
    assert (out / PROJECT / "README.md").read_text().endswith("local edit\n"), "the local edit was lost"


def test_remote_base_writes_hosted_urls(tmp_path):
    r = split(tmp_path / "hosted", "--remote-base", "https://git.example.org/forensics/")
    assert r.returncode == 0, r.stderr
    modules = (tmp_path / "hosted" / SUPER / ".gitmodules").read_text()
    assert "url = https://git.example.org/forensics/cascade-fast-filter.git\n" in modules
    project = (tmp_path / "hosted" / PROJECT / ".gitmodules").read_text()
    assert f"url = https://git.example.org/forensics/{COMMON}.git\n" in project


def readme_install_args(readme: Path) -> list[str]:
    """The ``-e`` arguments of the README's ``pip install`` line (the line that brings in common-utils)."""
    lines = [line for line in readme.read_text().splitlines() if "pip install" in line and "-e ./common-utils" in line]
    assert len(lines) == 1, f"{readme}: expected one 'pip install ... -e ./common-utils -e .' line, got {lines}"
    words = shlex.split(lines[0].split("pip install", 1)[1].split("&&")[0])
    return [w for i, w in enumerate(words) if w == "-e" or (i and words[i - 1] == "-e")]


def test_superproject_clones_recursively_and_a_project_passes_its_tests_alone(repos, tmp_path):
    clones = tmp_path / "clones"
    clones.mkdir()
    subprocess.run([*CLONE, str(repos / SUPER), "super"], cwd=clones, check=True, capture_output=True, timeout=300)
    for name in folders():
        assert (clones / "super" / name / "pyproject.toml").is_file(), f"{name} not checked out by the recursive clone"
        if name != COMMON:
            assert (clones / "super" / name / COMMON / "common_utils").is_dir(), f"{name}/{COMMON} not checked out"

    subprocess.run([*CLONE, str(repos / PROJECT)], cwd=clones, check=True, capture_output=True, timeout=300)
    project = clones / PROJECT
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    # third-party packages (torch, ..., pip, setuptools, pytest) from this repository's environment
    Path(site, "monorepo-third-party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    args = readme_install_args(project / "README.md")
    assert args == ["-e", "./common-utils", "-e", "."], args
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation", *args],
                       cwd=project, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHARED_DIR")}
    where = subprocess.run([py, "-c", f"import {PACKAGE}, common_utils; print({PACKAGE}.__file__); "
                                      "print(common_utils.__file__)"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert where == [str(project / PACKAGE / "__init__.py"), str(project / COMMON / "common_utils" / "__init__.py")]

    r = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=env,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"pytest in the standalone {PROJECT} clone failed:\n{r.stdout[-4000:]}{r.stderr[-2000:]}"
    assert re.search(r"\d+ passed", r.stdout), r.stdout[-2000:]
