"""YAML configs validated against a schema of defaults; ``key=value`` overrides; the resolved run directory."""
from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A config file or override that does not fit the schema; the message names the key and the file."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4`` and would give the string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _check_type(default, value, source: str, dotted: str) -> None:
    """A value must have its default's kind (number, bool, string, list); ``None`` on either side is always allowed."""
    if default is None or value is None:
        return
    kinds = ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "a list"))
    for kind, name in kinds:
        if isinstance(default, kind):
            ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
            if not ok:
                raise ConfigError(f"{source}: config key '{dotted}' must be {name} like its default {default!r}, "
                                  f"got {value!r}")
            return


def _check_keys(data: Mapping, schema: Mapping, source: str, prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            known = ", ".join(sorted(map(str, schema))) or "none"
            raise ConfigError(f"{source}: unknown config key '{dotted}' (known keys here: {known})")
        if isinstance(schema[key], Mapping) and schema[key] and isinstance(value, Mapping):
            _check_keys(value, schema[key], source, dotted + ".")
        elif isinstance(schema[key], Mapping) and schema[key] and value is not None:
            raise ConfigError(f"{source}: config key '{dotted}' must be a mapping, got {value!r}")
        elif not isinstance(schema[key], Mapping):
            _check_type(schema[key], value, source, dotted)


def _parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    try:
        value = _load_yaml(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(path: str | os.PathLike | None, defaults: Mapping | str | os.PathLike,
                overrides: Iterable[str] = ()) -> DictConfig:
    """Merge ``defaults`` <- the YAML file at ``path`` <- ``key=value`` overrides and return a struct-mode DictConfig.

    ``defaults`` is the schema: a nested dict or the path of the YAML file declaring every key. A key in the file or
    in an override that the schema does not declare raises :class:`ConfigError` naming the dotted key and its source.
    """
    schema = _read_yaml(Path(defaults)) if isinstance(defaults, (str, os.PathLike)) else dict(defaults)
    cfg = OmegaConf.create(schema)
    if path is not None:
        path = Path(path)
        data = _read_yaml(path)
        _check_keys(data, schema, str(path))
        cfg = OmegaConf.merge(cfg, data)
    for item in overrides:
        key, value = _parse_override(item)
        node: object = schema
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(f"override '{item}': unknown config key '{key}'")
            node = node[part]
        if not isinstance(node, Mapping):
            _check_type(node, value, f"override '{item}'", key)
        try:
            OmegaConf.update(cfg, key, value, merge=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"override '{item}': {e}") from e
    OmegaConf.set_struct(cfg, True)
    return cfg


def prepare_run_dir(run_dir: str | os.PathLike, cfg: DictConfig | Mapping, is_main: bool = True) -> Path:
    """Create ``run_dir`` and (on the main process) write the resolved ``config.yaml`` into it."""
    run_dir = Path(run_dir)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        tmp = run_dir / ".config.yaml.tmp"
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
        os.replace(tmp, run_dir / "config.yaml")
    return run_dir


def parse_args_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None = None,
                              dest: str = "overrides") -> argparse.Namespace:
    """``parser.parse_args`` that also accepts ``key=value`` overrides after the options (as job files write them).

    Leftover ``key=value`` words are appended to ``args.<dest>``; any other unknown word is the usual argparse error.
    """
    args, extra = parser.parse_known_args(argv)
    bad = [word for word in extra if word.startswith("-") or "=" not in word]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    setattr(args, dest, list(getattr(args, dest, None) or []) + extra)
    return args
