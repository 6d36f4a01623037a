"""Run a command-line ``main(argv)`` so that a user's mistake prints one line, not a traceback.

    if __name__ == "__main__":
        sys.exit(run_cli(main, prog="python -m spai"))

A known user error (bad data or weights file, bad config, checkpoint that does not fit the model, a run directory
that holds another run, missing file, full disk, non-finite loss or divergence...) prints
``<prog>: error: <file/place: what is wrong; what to do>`` as ONE line on stderr and exits with status 1.
``--debug`` anywhere on the command line re-raises it with the full traceback instead; the traceback is also logged
at DEBUG level (``common_utils.cli`` logger), so a run log that records DEBUG keeps it.
Any other exception is a bug and propagates with its traceback.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

DEBUG_FLAG = "--debug"


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types reported as one line: every error type the toolkit raises for bad input."""
    from .data.errors import DataFormatError
    from .train import ConfigError, NonFiniteLossError, RunDirError, RunStateError, StateDictMismatchError

    # ValueError covers DataFormatError (and WeightsFileError), ConfigError, StateDictMismatchError, RunStateError and
    # the projects' config checks; OSError covers missing files, permissions and a full disk (CheckpointWriteError);
    # NonFiniteLossError covers DivergenceError.
    return (DataFormatError, ConfigError, StateDictMismatchError, RunStateError, NonFiniteLossError, RunDirError,
            ValueError, OSError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages, e.g. key lists, joined with '; ')."""
    parts = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(parts) or type(error).__name__


def run_cli(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None, prog: str | None = None,
            extra_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Call ``main(argv without --debug)``; return its exit status (None -> 0), or 1 after a one-line user error.

    extra_errors: more exception types a project reports as user errors.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    prog = prog or sys.argv[0]
    try:
        status = main(argv)
    except user_errors() + tuple(extra_errors) as e:
        if debug:
            raise
        log.debug("%s failed", prog, exc_info=True)
        print(f"{prog}: error: {one_line(e)} (run with {DEBUG_FLAG} for the traceback)", file=sys.stderr)
        return 1
    return int(status or 0)
