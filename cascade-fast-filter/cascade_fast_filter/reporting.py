"""Report helpers: plain-JSON conversion and Markdown tables."""
from __future__ import annotations

import math

import numpy as np


def to_jsonable(obj):
    """Nested dicts/lists/numpy scalars -> plain JSON types; NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def fmt(value, digits: int = 4) -> str:
    """A number for a table: ``n/a`` for None, integers as they are, floats with ``digits`` decimals."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """Lines of a Markdown table; cells are formatted with :func:`fmt` unless already strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |")
    return lines
