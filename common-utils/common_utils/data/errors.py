"""The one error type raised by every reader and loader in `common_utils.data`."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """Bad or missing input data. The message starts with ``<file>[:<line>|<key path>]:``.

    Attributes ``path``, ``line`` and ``key`` keep the location for programmatic use.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None, key: str | None = None):
        self.path, self.line, self.key = Path(path), line, key
        where = str(path)
        if line is not None:
            where += f":{line}"
        if key is not None:
            where += f" [{key}]"
        super().__init__(f"{where}: {message}")
