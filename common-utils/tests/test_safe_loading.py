"""Every entry point that reads weights refuses crafted files without running them.

ENTRY_POINTS is the one list of those entry points (functions, CLI options, config keys). A new loader joins it;
the source scan at the bottom fails when a weights/pickle reader appears outside ``common_utils.safe_load``, so a
new loader cannot bypass it unnoticed. Each entry is fed every payload of ``payloads.make_payloads`` (zip, legacy,
legacy header records, raw pickle, TorchScript archive): nothing may run (no marker file), and the error is one
line naming the file.

Project packages are imported by name at run time (this folder imports no sibling project); a project whose
package is not installed has its entries skipped with the reason.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import re
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from common_utils.cli import run_cli, user_errors
from payloads import make_payloads

REPO = Path(__file__).resolve().parents[2]


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        pytest.skip(f"{name} is not installed here ({e})")


def _config(package: str, relative: str) -> str:
    path = Path(_module(package).__file__).resolve().parents[1] / relative
    if not path.is_file():
        pytest.skip(f"{relative} is not beside the installed {package} package")
    return str(path)


class Accepted(AssertionError):
    """The entry point read a crafted file without complaint."""


def _cli(module: str, prog: str, argv: list[str]) -> str:
    """Run a CLI through run_cli as ``python -m`` does; return its stderr (it must exit with status 1)."""
    main = _module(module).main
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = run_cli(main, argv, prog=prog)
    if status != 1:
        raise Accepted(f"{prog} {' '.join(argv)} exited with {status}; stderr: {err.getvalue()!r}")
    return err.getvalue()


@dataclass
class EntryPoint:
    name: str  # what a user touches: CLI option, config key or function
    feed: Callable[[Path, Path], str | None]  # (payload file, tmp dir) -> CLI stderr, or None for a function
    suffix: str = ".pth"  # the file name an entry point expects (".pt" for OpenAI CLIP files)


def _call(fn: Callable[[], object]) -> None:
    fn()
    raise Accepted("returned normally")


# --------------------------------------------------------------------------------------------- the one list

def _common_utils():
    return [
        EntryPoint("common_utils.safe_load.load_weights", lambda p, t: _call(
            lambda: _module("common_utils.safe_load").load_weights(p))),
        EntryPoint("common_utils.train.load_checkpoint (the --resume of audio train-stage1/train-xai, faap train/"
                   "train-detr, cascade train, clip train_stage1/train_stage2; faap eval.checkpoint, audio xai.pth)",
                   lambda p, t: _call(lambda: _module("common_utils.train").load_checkpoint(p))),
        EntryPoint("common_utils.train.load_run_state (the engine's --resume: RunDir.resume; every trainer)",
                   lambda p, t: _call(lambda: _module("common_utils.train").load_run_state(p, None, None))),
        EntryPoint("common_utils.train.read_run_state", lambda p, t: _call(
            lambda: _module("common_utils.train").read_run_state(p))),
        EntryPoint("common_utils.clip_weights.load_open_clip (OpenAI .pt)", lambda p, t: _call(
            lambda: _module("common_utils.clip_weights").load_open_clip("ViT-B-16", p)), suffix=".pt"),
        EntryPoint("common_utils.clip_weights.load_open_clip (open_clip file)", lambda p, t: _call(
            lambda: _module("common_utils.clip_weights").load_open_clip("ViT-B-16", p)), suffix=".bin"),
        EntryPoint("common_utils.data.read_partialspoof_labels (PartialSpoof *_seglab_0.02.npy)", lambda p, t: _call(
            lambda: _module("common_utils.data").read_partialspoof_labels(p)), suffix=".npy"),
    ]


def _spai():
    def spai_cli(cmd):
        def feed(p, t):
            extra = ["--input", str(t)] if cmd == "infer" else ["--test-csv", str(t / "test.csv")]
            return _cli("spai.__main__", "python -m spai", [cmd, "--model", str(p), *extra, "--output", str(t / "o")])
        return feed

    def tower(p, t):
        _call(lambda: _module("spai.models.backbones").SemanticTower("ViT-B-16", str(p)))

    return [
        EntryPoint("python -m spai infer --model", spai_cli("infer")),
        EntryPoint("python -m spai test --model", spai_cli("test")),
        EntryPoint("spai PRETRAINED / train --pretrained (spai.models.load_pretrained)", lambda p, t: _call(
            lambda: _module("spai.models").load_pretrained(torch.nn.Module(), p))),
        EntryPoint("spai train --resume (spai.utils.load_checkpoint_file)", lambda p, t: _call(
            lambda: _module("spai.utils").load_checkpoint_file(p))),
        EntryPoint("spai MODEL.SEMANTIC.CLIP_WEIGHTS (open_clip file)", tower, suffix=".bin"),
        EntryPoint("spai MODEL.SEMANTIC.CLIP_WEIGHTS (OpenAI .pt)", tower, suffix=".pt"),
    ]


def _clip():
    def encoder(p, t):
        _call(lambda: _module("clip_fairness_adapter.model").FrozenCLIPImageEncoder("ViT-L-14-quickgelu", str(p)))

    def evaluate(p, t):
        cfg = _config("clip_fairness_adapter", "config/tiny_stage2.yaml")
        tower = _config("clip_fairness_adapter", "config/open_clip/TinyCLIP.json")
        return _cli("clip_fairness_adapter.__main__", "python -m clip_fairness_adapter",
                    ["eval", "--config", cfg, "--checkpoint", str(p), f"run_dir={t / 'run'}",
                     f"clip.model_config={tower}"])

    return [
        EntryPoint("clip clip.pretrained (OpenAI .pt, FrozenCLIPImageEncoder)", encoder, suffix=".pt"),
        EntryPoint("clip clip.pretrained (open_clip file)", encoder, suffix=".bin"),
        EntryPoint("clip stage1_checkpoint (read_stage1_adapter)", lambda p, t: _call(
            lambda: _module("clip_fairness_adapter.model").read_stage1_adapter(p))),
        EntryPoint("python -m clip_fairness_adapter eval --checkpoint", evaluate),
    ]


def _audio():
    def score(p, t):
        cfg = _config("audio_xai", "configs/tiny.yaml")
        return _cli("audio_xai.__main__", "python -m audio_xai",
                    ["score", "--config", cfg, "--checkpoint", str(p), f"run_dir={t / 'run'}"])

    return [
        EntryPoint("python -m audio_xai score --checkpoint (avg_5_best.pth)", score),
        EntryPoint("audio model.pretrained_checkpoint / avg_5_best.pth (load_tcm_checkpoint)", lambda p, t: _call(
            lambda: _module("audio_xai.model.conformertcm").load_tcm_checkpoint(None, p))),
        EntryPoint("audio detector.ssl_pretrained (load_pretrained_ssl)", lambda p, t: _call(
            lambda: _module("audio_xai.model.ssl_frontend").load_pretrained_ssl(None, p))),
        EntryPoint("audio detector.ssl_pretrained (.safetensors name)", lambda p, t: _call(
            lambda: _module("audio_xai.model.ssl_frontend").load_pretrained_ssl(None, p)), suffix=".safetensors"),
        EntryPoint("audio Stage 1 best-epoch averaging (average_state_dicts)", lambda p, t: _call(
            lambda: _module("audio_xai.trainer.stage1").average_state_dicts([p]))),
        EntryPoint("audio Stage 2 xai.pth (load_xai)", lambda p, t: _call(
            lambda: _module("audio_xai.trainer.stage2").load_xai(None, p))),
    ]


def _faap():
    def evaluate(p, t):
        cfg = _config("faap_detr", "configs/tiny.yaml")
        return _cli("faap_detr.main", "python -m faap_detr",
                    ["eval", "--config", cfg, "--checkpoint", str(p), f"run_dir={t / 'run'}"])

    return [
        EntryPoint("python -m faap_detr eval --checkpoint (load_generator)", evaluate),
        EntryPoint("faap detr.checkpoint: official DETR detr-r50-e632da11.pth (load_detr_checkpoint)",
                   lambda p, t: _call(lambda: _module("faap_detr.models.detr").load_detr_checkpoint(None, p))),
    ]


def _cascade():
    def pretrained(p, t):
        config, model = _module("cascade_fast_filter.config"), _module("cascade_fast_filter.stage1.model")
        cfg = config.get_config(None, [f"model.pretrained_file={p}", "model.pretrained=true"])
        _call(lambda: model.build(cfg.model))

    def infer(p, t):
        return _cli("cascade_fast_filter.__main__", "python -m cascade_fast_filter",
                    ["infer", "--checkpoint", str(p), "--input", str(t), "--output", str(t / "o.csv")])

    return [
        EntryPoint("cascade model.pretrained_file (timm ImageNet weights)", pretrained, suffix=".safetensors"),
        EntryPoint("cascade model.pretrained_file (.pth name)", pretrained),
        EntryPoint("python -m cascade_fast_filter infer --checkpoint (load_trained_model)", infer),
    ]


ENTRY_POINTS: dict[str, Callable[[], list[EntryPoint]]] = {
    "common_utils": _common_utils, "spai": _spai, "clip_fairness_adapter": _clip, "audio_xai": _audio,
    "faap_detr": _faap, "cascade_fast_filter": _cascade,
}
PAYLOAD_KINDS = ("zip", "legacy", "legacy-header", "raw-pickle", "torchscript")


def _entries():
    for package, build in ENTRY_POINTS.items():
        try:
            importlib.import_module(package)
        except ImportError as e:
            yield pytest.param(package, None, marks=pytest.mark.skip(reason=f"{package} is not installed ({e})"),
                               id=package)
            continue
        for entry in build():
            yield pytest.param(package, entry, id=entry.name.split(" (")[0])


@pytest.mark.parametrize("package,entry", list(_entries()))
def test_entry_point_refuses_every_payload(package, entry, tmp_path):
    marker = tmp_path / "CODE_RAN"
    files = make_payloads(tmp_path / "payloads", marker, entry.suffix)
    for kind in PAYLOAD_KINDS:
        work = tmp_path / kind
        work.mkdir()
        try:
            stderr = entry.feed(files[kind], work)
        except Accepted as e:
            pytest.fail(f"{entry.name} accepted the {kind} payload: {e}")
        except user_errors() as e:  # a function entry point raised
            message, stderr = str(e), None
            assert "\n" not in message, f"{entry.name}, {kind}: not one line: {message!r}"
        if stderr is not None:
            lines = stderr.strip().splitlines()
            assert len(lines) == 1, f"{entry.name}, {kind}: stderr is not one line: {stderr!r}"
            message = lines[0]
        assert not marker.exists(), f"{entry.name} RAN the code of the {kind} payload"
        assert files[kind].name in message, f"{entry.name}, {kind}: the error does not name the file: {message!r}"
        if entry.suffix != ".npy":  # a weights reader says it refused; the .npy reader says it is no .npy
            assert re.search(r"refused", message), f"{entry.name}, {kind}: {message!r}"


# ------------------------------------------------------------------------------------ nothing bypasses the loader

# reading a pickle or a weights file anywhere but here would bypass the allow-lists
READERS = re.compile(r"torch\.load\(|torch\.jit\.load|jit\.load\(|pickle\.loads?\(|\.Unpickler\b|"
                     r"allow_pickle\s*=\s*True|load_openai_model|timm\.models\.load_state_dict|"
                     r"load_checkpoint\(\s*model|safetensors\.torch import load_file|from_pretrained\(|"
                     r"merge_from_file|yaml\.unsafe_load|yaml\.load\(")
ALLOWED = {
    "common-utils/common_utils/safe_load.py": "the one weights reader",
    "common-utils/common_utils/train/config.py": "yaml.load with a SafeLoader subclass",
    "common-utils/common_utils/synthetic/partial_spoof_audio.py": "writes (np.save allow_pickle) the official format",
}


def _code_lines(text: str) -> dict[int, str]:
    """{line number: the line's code tokens} (strings, docstrings and comments dropped)."""
    lines: dict[int, list[str]] = {}
    skip = {tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    skip |= {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in skip:
            lines.setdefault(tok.start[0], []).append(tok.string)
    return {no: re.sub(r"\s*([.(=])\s*", r"\1", " ".join(toks)) for no, toks in lines.items()}


def test_no_weights_reader_outside_the_safe_loader():
    offenders = []
    for py in sorted(REPO.rglob("*.py")):
        rel = py.relative_to(REPO).as_posix()
        if ".venv" in py.parts or "/tests/" in f"/{rel}" or rel.startswith("tests/") or rel in ALLOWED:
            continue
        for no, code in _code_lines(py.read_text(encoding="utf-8")).items():
            if READERS.search(code):
                offenders.append(f"{rel}:{no}: {code}")
    assert not offenders, ("read weights/pickles through common_utils.safe_load (and add the entry point to "
                           "ENTRY_POINTS):\n" + "\n".join(offenders))


def test_the_scan_catches_a_new_reader():
    code = ("sd = torch.load(path)\nm = torch.jit.load( p )\nx = pickle.load(f)\nnp.load(f, allow_pickle = True)\n"
            "open_clip.load_openai_model(p)\ncfg.merge_from_file(p)\n"
            "'''torch.load( in a docstring'''  # torch.load( in a comment\n")
    found = {no for no, line in _code_lines(code).items() if READERS.search(line)}
    assert found == {1, 2, 3, 4, 5, 6}


def test_spai_cfg_runs_no_python_and_no_yaml_tags(tmp_path):
    """yacs executes a ``.py`` config given to merge_from_file; SPAI's --cfg accepts YAML only, read safely."""
    _module("spai.config")
    marker = tmp_path / "CODE_RAN"
    configs = {
        "python config": ("evil.py", f"import os\nos.system(\"touch '{marker}'\")\ncfg = None\n", "must be YAML"),
        "python as a YAML mapping": ("evil.py", f"x = {{'a': __import__('os').system(\"touch '{marker}'\")}}\n",
                                     "must be YAML"),
        "YAML python tag": ("evil.yaml", f"SEED: !!python/object/apply:os.system [\"touch '{marker}'\"]\n",
                            "not valid YAML"),
    }
    for name, (file, text, expected) in configs.items():
        (tmp_path / file).write_text(text)
        stderr = _cli("spai.__main__", "python -m spai", ["infer", "--cfg", str(tmp_path / file), "--model",
                                                          str(tmp_path / "m.pth"), "--input", str(tmp_path)])
        assert not marker.exists(), name
        assert len(stderr.strip().splitlines()) == 1 and file in stderr and expected in stderr, (name, stderr)
