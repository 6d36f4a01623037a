"""Design criteria as data: each demo writes ``criteria.json`` (see ``shared/CRITERIA.md``).

A criterion is a dict ``{"criterion", "target", "measured", "pass", "split", "n", "note", ...extra}``. ``pass`` is
always computed here from ``measured`` and ``target``, never written by hand. Targets are text:

- ``">= 0.85"``, ``"< 0.05"``, ``"> 0"``, ``"== 1"`` — compare with a number;
- ``"> baseline"``, ``"<= 0.7 * stage2_only"`` — compare with (a multiple of) another number given by keyword;
  the referenced numbers are kept as extra fields of the criterion;
- ``"in (0.05, 0.95)"`` / ``"in [0, 1]"`` — inside an open / closed interval.

Example::

    write_criteria(out / "criteria.json", [
        criterion("held-out ECE reduction after temperature scaling", ">= 0.50", 0.61, split="test", n=240,
                  note="positive-class ECE, 15 bins"),
        criterion("stage 2 subgroup AUC std vs linear probe", "< probe", 0.031, split="test", probe=0.048),
    ])
"""
from __future__ import annotations

import json
import math
import operator
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_COMPARE = re.compile(r"^\s*(>=|<=|>|<|==)\s*(?:([-+0-9.eE]+)\s*\*\s*)?([A-Za-z_][A-Za-z0-9_]*|[-+0-9.eE]+)\s*$")
_INTERVAL = re.compile(r"^\s*in\s*([\[(])\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*([\])])\s*$")


class TargetError(ValueError):
    """A target string that cannot be parsed, or that names a reference value that was not given."""


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def check_target(target: str, measured, refs: Mapping | None = None) -> bool:
    """Whether ``measured`` meets ``target`` (module docstring); ``None``/NaN never passes."""
    refs = refs or {}
    m = _INTERVAL.match(target)
    if m:
        lo, hi = float(m.group(2)), float(m.group(3))
        value = _number(measured)
        if value is None:
            return False
        above = value >= lo if m.group(1) == "[" else value > lo
        below = value <= hi if m.group(4) == "]" else value < hi
        return above and below
    m = _COMPARE.match(target)
    if not m:
        raise TargetError(f"target {target!r}: expected '<op> <number|name>', '<op> <k> * <name>' or 'in (a, b)'")
    op, factor, rhs = m.group(1), m.group(2), m.group(3)
    try:
        bound = float(rhs)
    except ValueError:
        if rhs not in refs:
            raise TargetError(f"target {target!r} names {rhs!r}, which was not given as a keyword") from None
        bound = _number(refs[rhs])
        if bound is None:
            return False
    bound *= float(factor) if factor else 1.0
    value = _number(measured)
    return value is not None and _OPS[op](value, bound)


def criterion(name: str, target: str, measured, *, split: str, n: int | None = None, note: str = "",
              **extra) -> dict:
    """One criterion with ``pass`` computed from ``measured`` and ``target``; ``extra`` holds compared-with values.

    ``measured=None`` (could not be measured) fails and needs a ``note`` saying why.
    """
    value = _number(measured)
    if value is None and not note:
        raise ValueError(f"criterion {name!r}: measured is {measured!r}; give a note saying why it is missing")
    extra = {k: (_number(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
             for k, v in extra.items()}
    return {"criterion": name, "target": target, "measured": value,
            "pass": check_target(target, value, extra), "split": split, "n": n, "note": note, **extra}


def write_criteria(path: str | os.PathLike, items: Iterable[Mapping]) -> Path:
    """Write the list as ``criteria.json`` (indented JSON); criterion names must be unique."""
    items = [dict(i) for i in items]
    names = [i["criterion"] for i in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate criterion names {dupes}: the study aggregates by name")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(items, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_criteria(path: str | os.PathLike) -> list[dict]:
    """Read ``criteria.json`` and re-check every ``pass`` against its ``measured`` and ``target``."""
    path = Path(path)
    items = json.loads(path.read_text())
    if not isinstance(items, list):
        raise ValueError(f"{path}: criteria.json must hold a JSON list")
    for i, item in enumerate(items):
        missing = [k for k in ("criterion", "target", "measured", "pass", "split") if k not in item]
        if missing:
            raise ValueError(f"{path}[{i}]: criterion lacks {missing}")
        refs = {k: v for k, v in item.items() if k not in ("criterion", "target", "measured", "pass")}
        if check_target(item["target"], item["measured"], refs) != item["pass"]:
            raise ValueError(f"{path}[{i}] '{item['criterion']}': pass={item['pass']} does not follow from measured="
                             f"{item['measured']} and target {item['target']!r}")
    return items
