"""common_utils.cli.run_cli: a user error is one line on stderr and exit status 1; --debug gives the traceback."""
import logging

import pytest
from common_utils.cli import run_cli
from common_utils.data import DataFormatError
from common_utils.train import StateDictMismatchError


def _main_raising(error):
    def main(argv):
        assert "--debug" not in argv
        raise error
    return main


@pytest.mark.parametrize("error,expected", [
    (DataFormatError("data/train.csv", "bad label 'x'; expected one of [0, 1]", line=7),
     "data/train.csv:7: bad label 'x'; expected one of [0, 1]"),
    (StateDictMismatchError("ckpt.pth does not match Net:\n  missing: ['a']\n  unexpected: []"),
     "ckpt.pth does not match Net:; missing: ['a']; unexpected: []"),
    (FileNotFoundError("weights/spai.pth: checkpoint not found"), "weights/spai.pth: checkpoint not found"),
])
def test_user_error_is_one_line(capsys, caplog, error, expected):
    with caplog.at_level(logging.DEBUG, logger="common_utils.cli"):
        assert run_cli(_main_raising(error), ["x"], prog="python -m tool") == 1
    err = capsys.readouterr().err
    assert err == f"python -m tool: error: {expected} (run with --debug for the traceback)\n"
    assert "Traceback" in caplog.text  # the log keeps the traceback


def test_debug_reraises_and_success_returns_status(capsys):
    error = DataFormatError("a.csv", "empty file")
    with pytest.raises(DataFormatError):
        run_cli(_main_raising(error), ["--debug", "x"], prog="tool")
    assert run_cli(lambda argv: None, [], prog="tool") == 0
    assert run_cli(lambda argv: 3, [], prog="tool") == 3


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError):
        run_cli(_main_raising(KeyError("oops")), [], prog="tool")
