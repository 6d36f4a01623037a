"""Reading text and JSON inputs so that every problem names the file and the line or JSON path.

UTF-8 with or without a byte-order mark is accepted; any other encoding is an error naming the line of the first
undecodable byte. JSON objects with a repeated key are an error naming the key's path (``json`` would silently
keep the last value).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import DataFormatError

log = logging.getLogger(__name__)


def require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found" if not path.exists() else "not a regular file")
    return path


def read_text(path: str | Path) -> str:
    """The file decoded as UTF-8 (a leading byte-order mark is dropped); line endings are kept as they are."""
    path = require_file(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataFormatError(path, f"byte 0x{data[e.start]:02x} at column {column} is not UTF-8 (a Latin-1 or "
                                    "Windows-1252 file?); re-save the file as UTF-8", line=line) from None


class _Object(dict):
    """A JSON object that remembers keys the text repeated."""

    repeated: list[str]


def _object(pairs):
    obj = _Object(pairs)
    obj.repeated = [k for i, (k, _) in enumerate(pairs) if any(k == other for other, _ in pairs[:i])]
    return obj


def json_path(parent: str, key: str | int) -> str:
    """``annotations[12].bbox`` style paths: list indices in brackets, object keys after a dot."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _check_repeated(path: Path, value: Any, where: str) -> Any:
    """Convert to plain dicts; raise on the first object with a repeated key."""
    if isinstance(value, dict):
        if getattr(value, "repeated", None):
            key = value.repeated[0]
            raise DataFormatError(path, f"key {key!r} appears twice in the same object (JSON keeps only the last); "
                                        "remove or rename one", key=json_path(where, key))
        return {k: _check_repeated(path, v, json_path(where, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_check_repeated(path, v, json_path(where, i)) for i, v in enumerate(value)]
    return value


def read_json(path: str | Path) -> Any:
    """Parse a JSON file (UTF-8, BOM allowed). Syntax errors name line and column; repeated keys their path."""
    path = require_file(path)
    text = read_text(path)
    try:
        data = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON: {e.msg} (column {e.colno}); fix the file",
                              line=e.lineno) from None
    return _check_repeated(path, data, "")


class Duplicates:
    """Tracks items (e.g. image paths) by key; a repeat is an error naming both places unless allowed.

    ``see(key, place, group)``: ``place`` is a line number or a JSON path; ``group`` a split name (an item in two
    groups is reported as a leak between them). With ``allow=True`` repeats are kept and counted (:meth:`report`).
    """

    def __init__(self, source: Path, what: str, allow: bool = False):
        self.source, self.what, self.allow = source, what, allow
        self.first: dict[Any, tuple[Any, str | None]] = {}
        self.count = 0

    def see(self, key: Any, place: int | str, group: str | None = None) -> None:
        if key not in self.first:
            self.first[key] = (place, group)
            return
        self.count += 1
        if self.allow:
            return
        first, first_group = self.first[key]
        name = key if isinstance(key, str) else str(key)
        where = dict(line=place) if isinstance(place, int) else dict(key=str(place))
        what_first = f"line {first}" if isinstance(first, int) else str(first)
        if group is not None and first_group is not None and group != first_group:
            raise DataFormatError(self.source, f"{self.what} {name!r} is in split {first_group!r} ({what_first}) and "
                                               f"in split {group!r}: one item in two splits leaks between them; remove "
                                               "one (or pass allow_duplicates=True)", **where)
        raise DataFormatError(self.source, f"{self.what} {name!r} is listed twice (first at {what_first}); remove "
                                           "one (or pass allow_duplicates=True)", **where)

    def report(self) -> None:
        if self.count:
            log.warning("%s: %d repeated %s(s) kept (allow_duplicates=True)", self.source, self.count, self.what)


def normalised(path: Path) -> str:
    """A path's key for duplicate checks: ``a/./b.png`` and ``a/b.png`` are the same file."""
    return os.path.normpath(str(path))
