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


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """Build a mapping, refusing a key that appears twice (PyYAML would silently keep the last one)."""
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1}, again at line "
                f"{key_node.start_mark.line + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
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
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


REQUIRED = "???"  # a schema default that must be replaced by the file or an override (OmegaConf's MISSING)


def _check_type(default, value, source: str, dotted: str, nullable: frozenset = frozenset()) -> None:
    """A value must have its default's kind (boolean, integer, number, string, list).

    A schema default of ``None`` admits any value. ``null`` replaces a non-null default only for keys listed in
    ``nullable`` (e.g. an optional weights path); a required key (default ``???``) takes any non-null value.
    """
    if default is None:
        return
    if value is None:
        if dotted in nullable:
            return
        need = "is required" if default == REQUIRED else f"cannot be null (its default is {default!r})"
        raise ConfigError(f"{source}: config key '{dotted}' {need}; give it a value")
    if default == REQUIRED:
        return
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (list, "a list"))
    for kind, name in kinds:
        if isinstance(default, kind):
            allowed = (int, float) if kind is float else kind
            ok = isinstance(value, allowed) and not (kind is not bool and isinstance(value, bool))
            if not ok:
                raise ConfigError(f"{source}: config key '{dotted}' must be {name} like its default {default!r}, "
                                  f"got {value!r}")
            return


def _check_keys(data: Mapping, schema: Mapping, source: str, prefix: str = "",
                nullable: frozenset = frozenset()) -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            known = ", ".join(sorted(map(str, schema))) or "none"
            raise ConfigError(f"{source}: unknown config key '{dotted}' (known keys here: {known})")
        section = isinstance(schema[key], Mapping) and bool(schema[key])
        if section and isinstance(value, Mapping):
            _check_keys(value, schema[key], source, dotted + ".", nullable)
        elif section:
            raise ConfigError(f"{source}: config key '{dotted}' is a section and must be a mapping, got {value!r}")
        elif not isinstance(schema[key], Mapping):
            _check_type(schema[key], value, source, dotted, nullable)


def _missing_required(cfg: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for key in cfg:
        dotted = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            out.append(dotted)
        elif isinstance(cfg[key], DictConfig):
            out += _missing_required(cfg[key], dotted + ".")
    return out


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
                overrides: Iterable[str] = (), nullable: Iterable[str] = ()) -> DictConfig:
    """Merge ``defaults`` <- the YAML file at ``path`` <- ``key=value`` overrides and return a struct-mode DictConfig.

    ``defaults`` is the schema: a nested dict or the path of the YAML file declaring every key. Raises
    :class:`ConfigError` naming the dotted key and its source for: a key the schema does not declare, a duplicate
    key in a YAML file, a value of the wrong kind (a scalar for a section, ``2.5`` for an integer, a string for a
    number), ``null`` for a key whose default is not null (unless the key is listed in ``nullable``), and a
    required key (default ``???``) left unset.
    """
    nullable = frozenset(nullable)
    schema = _read_yaml(Path(defaults)) if isinstance(defaults, (str, os.PathLike)) else dict(defaults)
    cfg = OmegaConf.create(schema)
    if path is not None:
        path = Path(path)
        data = _read_yaml(path)
        _check_keys(data, schema, str(path), nullable=nullable)
        cfg = OmegaConf.merge(cfg, data)
    for item in overrides:
        key, value = _parse_override(item)
        node: object = schema
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(f"override '{item}': unknown config key '{key}'")
            node = node[part]
        if isinstance(node, Mapping) and node:
            if not isinstance(value, Mapping):
                raise ConfigError(f"override '{item}': config key '{key}' is a section; set one of its keys")
            _check_keys(value, node, f"override '{item}'", key + ".", nullable)
        elif not isinstance(node, Mapping):
            _check_type(node, value, f"override '{item}'", key, nullable)
        try:
            OmegaConf.update(cfg, key, value, merge=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"override '{item}': {e}") from e
    missing = _missing_required(cfg)
    if missing:
        where = f" in {path}" if path is not None else ""
        raise ConfigError(f"required config key(s) {missing} not set{where}; set them in the file or as key=value")
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
