"""Split the monorepo into standalone git repositories plus a superproject that bundles them as submodules.

    python tools/split_repos.py --out DIR [--remote-base URL] [--ref REF] [--super-name NAME]

Writes, for the commit REF (default HEAD; uncommitted changes are not part of it):

- ``DIR/<folder>`` for ``common-utils`` and every project folder (a top-level folder with a ``pyproject.toml``):
  the folder's history (``git subtree split``) on branch ``main``, plus one commit that makes it stand alone:
  ``constraints.txt`` (the monorepo's pins), the monorepo's ``.gitignore`` unless the folder has its own, and for
  a project ``common-utils/`` as a git submodule pinned to the split of common-utils at REF.
- ``DIR/<super-name>``: a superproject whose ``.gitmodules`` bundles the six repositories at the folder names, and a
  README.

Submodule URLs are relative (``../common-utils``, ``../<folder>``): git resolves them against the URL the
superproject or project was cloned from, so they work from ``DIR`` offline and, unchanged, once the repositories are
published side by side under one base URL. ``--remote-base URL`` writes absolute ``URL/<name>.git`` instead.

Run again into the same DIR (for a later REF) to update: each changed ``main`` gets a new commit whose first parent is
the folder's grown split history and second parent the previous ``main``, so pushing it fast-forwards; a repository
whose content did not change keeps its commit. DIR may hold only repositories this script wrote, with clean
checkouts. Commits carry REF's committer and date, so a fresh build from the same REF gives the same commit ids.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = "common-utils"
SUPER_NAME = "media-forensics-toolkit"
TAG = "tools/split_repos.py"  # every commit message written here names the tool (how a rerun recognises its repos)


class SplitError(RuntimeError):
    pass


def git(*args: str, cwd: Path, env: dict | None = None, input: str | None = None) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, input=input)
    if r.returncode != 0:
        raise SplitError(f"git {' '.join(args)} (in {cwd}) failed: {(r.stderr or r.stdout).strip()}")
    return r.stdout.strip()


def folders_at(repo: Path, ref: str) -> list[str]:
    """common-utils first, then the project folders: top-level folders with a pyproject.toml at ``ref``."""
    top = [line.split("\t", 1)[1] for line in git("ls-tree", ref, cwd=repo).splitlines() if " tree " in line]
    names = sorted(name for name in top if subprocess.run(["git", "cat-file", "-e", f"{ref}:{name}/pyproject.toml"],
                                                          cwd=repo, capture_output=True).returncode == 0)
    if COMMON not in names:
        raise SplitError(f"{ref} has no {COMMON}/pyproject.toml; run from the monorepo")
    return [COMMON] + [n for n in names if n != COMMON]


def commit_env(repo: Path, ref: str) -> dict:
    """Author and committer = REF's committer, at REF's date: reproducible commit ids."""
    name, email, date = git("log", "-1", "--format=%cn%x00%ce%x00%cI", ref, cwd=repo).split("\x00")
    return {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": date}


def submodule_url(name: str, remote_base: str | None) -> str:
    return f"{remote_base.rstrip('/')}/{name}.git" if remote_base else f"../{name}"


def gitmodules(entries: list[tuple[str, str]]) -> str:
    return "".join(f'[submodule "{path}"]\n\tpath = {path}\n\turl = {url}\n' for path, url in entries)


def previous_main(path: Path) -> str | None:
    """``main`` of a repository this script wrote earlier at ``path`` (None when ``path`` does not exist yet)."""
    if not path.exists():
        return None
    if not (path / ".git").exists():
        raise SplitError(f"{path} exists and is not a git repository; move it away or choose another --out")
    r = subprocess.run(["git", "log", "-1", "--format=%B", "main"], cwd=path, capture_output=True, text=True)
    if r.returncode != 0 or TAG not in r.stdout:
        raise SplitError(f"{path}: its main was not written by {TAG}; move it away or choose another --out")
    if git("status", "--porcelain", cwd=path):
        raise SplitError(f"{path} has uncommitted changes; commit them elsewhere or discard them first")
    return git("rev-parse", "main", cwd=path)


def commit_tree(repo: Path, files: dict[str, str], gitlinks: dict[str, str], message: str, env: dict,
                base: str | None, previous: str | None) -> str:
    """Commit ``base``'s tree (empty when None) plus ``files`` (path -> text) and ``gitlinks`` (path -> commit),
    without a checkout, on parents ``base`` and ``previous``. Returns ``previous`` itself when it already is that
    commit's content on that base (an unchanged rebuild)."""
    index = Path(tempfile.mkstemp(prefix="split-index-")[1])
    index.unlink()  # git wants to create the index itself
    ienv = {**env, "GIT_INDEX_FILE": str(index)}
    try:
        if base:
            git("read-tree", base, cwd=repo, env=ienv)
        for path, text in files.items():
            blob = git("hash-object", "-w", "--stdin", cwd=repo, input=text)
            git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", cwd=repo, env=ienv)
        for path, sha in gitlinks.items():
            git("update-index", "--add", "--cacheinfo", f"160000,{sha},{path}", cwd=repo, env=ienv)
        tree = git("write-tree", cwd=repo, env=ienv)
    finally:
        index.unlink(missing_ok=True)
    if previous and git("rev-parse", f"{previous}^{{tree}}", cwd=repo) == tree and (
            base is None or git("rev-parse", f"{previous}^1", cwd=repo) == base):
        return previous
    parents = [p for p in (base, previous) if p]
    return git("commit-tree", tree, *[a for p in parents for a in ("-p", p)], "-m", message, cwd=repo, env=env)


def receive(path: Path, source: Path, commit: str) -> None:
    """``commit`` (and its history) from ``source`` into the repository at ``path`` (created when missing) as
    refs/split/source: ``subtree split`` commits are reachable from no ref of the monorepo, so they are pushed."""
    if not path.exists():
        git("init", "-q", "-b", "main", str(path), cwd=path.parent)
    git("push", "-q", "--force", str(path), f"{commit}:refs/split/source", cwd=source)


def set_main(path: Path, commit: str) -> None:
    """``main`` at ``commit`` and checked out (an existing checkout was verified clean); the temporary ref dropped."""
    git("update-ref", "refs/heads/main", commit, cwd=path)
    subprocess.run(["git", "update-ref", "-d", "refs/split/source"], cwd=path, capture_output=True)
    git("reset", "-q", "--hard", "main", cwd=path)


def description(repo: Path, ref: str, folder: str) -> str:
    for line in git("show", f"{ref}:{folder}/pyproject.toml", cwd=repo).splitlines():
        if line.startswith("description"):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def super_readme(folders: list[str], descriptions: dict[str, str]) -> str:
    rows = "\n".join(f"| [`{f}/`]({f}) | {descriptions.get(f, '')} |" for f in folders)
    return f"""# Media forensics toolkit

Five research codebases and the package they share, each its own git repository, bundled here as submodules.

```bash
git clone --recurse-submodules <this repository's URL> && cd {SUPER_NAME}
cd {folders[1]} && python3.11 -m venv .venv && .venv/bin/pip install -c constraints.txt -e ./{COMMON} -e . pytest
```

| folder | what it is |
|---|---|
{rows}

Each project repository carries `{COMMON}/` as its own submodule, pinned to the commit it was tested with (the same
commit as the top-level `{COMMON}/`), so it installs and tests alone: see its README.
"""


def split(repo: Path, out: Path, ref: str = "HEAD", remote_base: str | None = None,
          super_name: str = SUPER_NAME) -> dict[str, str]:
    """Write (or update) the repositories; returns name -> commit of its ``main``."""
    repo = Path(git("rev-parse", "--show-toplevel", cwd=repo))
    source_sha = git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=repo)
    folders = folders_at(repo, source_sha)
    names = [*folders, super_name]
    if out.exists():
        strangers = sorted(p.name for p in out.iterdir() if p.name not in names)
        if strangers:
            raise SplitError(f"{out} holds {', '.join(strangers)}, which {TAG} does not write; choose another --out")
    previous = {name: previous_main(out / name) for name in names}  # checks every one before anything is written
    out.mkdir(parents=True, exist_ok=True)
    env = commit_env(repo, source_sha)
    constraints = git("show", f"{source_sha}:constraints.txt", cwd=repo) + "\n"
    gitignore = git("show", f"{source_sha}:.gitignore", cwd=repo) + "\n"
    heads: dict[str, str] = {}
    for folder in folders:
        # Plain split (no --rejoin, no -b): it adds the split commits' objects to the monorepo and no ref.
        split_sha = git("subtree", "split", f"--prefix={folder}", source_sha, cwd=repo).splitlines()[-1]
        target = out / folder
        receive(target, repo, split_sha)
        has_own_ignore = bool(git("ls-tree", "--name-only", split_sha, "--", ".gitignore", cwd=target))
        files = {"constraints.txt": constraints, **({} if has_own_ignore else {".gitignore": gitignore})}
        gitlinks, lines = {}, ["constraints.txt: the monorepo's pinned versions (pip install -c constraints.txt)"]
        if folder != COMMON:
            files[".gitmodules"] = gitmodules([(COMMON, submodule_url(COMMON, remote_base))])
            gitlinks[COMMON] = heads[COMMON]
            lines.insert(0, f"{COMMON}/: git submodule at the {COMMON} commit split from the same monorepo commit")
        message = ("Standalone repository\n\n" + "".join(f"- {line}\n" for line in lines)
                   + f"\nSplit from monorepo commit {source_sha} (folder {folder}/) by {TAG}.\n")
        heads[folder] = commit_tree(target, files, gitlinks, message, env, split_sha, previous[folder])
        set_main(target, heads[folder])
        state = "unchanged" if heads[folder] == previous[folder] else "history + standalone commit"
        print(f"{target}: main at {heads[folder][:12]} ({folder}/ {state})")

    sup = out / super_name
    if previous[super_name] is None:
        git("init", "-q", "-b", "main", str(sup), cwd=out)
    files = {".gitmodules": gitmodules([(f, submodule_url(f, remote_base)) for f in folders]),
             "README.md": super_readme(folders, {f: description(repo, source_sha, f) for f in folders})}
    message = f"Bundle {', '.join(folders)} as submodules\n\nFrom monorepo commit {source_sha} by {TAG}.\n"
    heads[super_name] = commit_tree(sup, files, {f: heads[f] for f in folders}, message, env, None,
                                    previous[super_name])
    set_main(sup, heads[super_name])
    print(f"{sup}: main at {heads[super_name][:12]} (.gitmodules bundles {len(folders)} repositories)")
    return heads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/split_repos.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the repositories (new, or an earlier --out)")
    p.add_argument("--ref", default="HEAD", help="monorepo commit to split (default HEAD)")
    p.add_argument("--remote-base", help="write hosted submodule URLs <URL>/<name>.git instead of relative ones")
    p.add_argument("--super-name", default=SUPER_NAME, help=f"superproject folder name (default {SUPER_NAME})")
    args = p.parse_args(argv)
    try:
        split(Path(__file__).resolve().parent, args.out.resolve(), args.ref, args.remote_base, args.super_name)
    except SplitError as e:
        print(f"split_repos: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
