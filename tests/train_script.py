"""train.py loaded as a module for the tests, and its command-line error as a user sees it."""

import importlib.util
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("train", ROOT / "train.py")
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)


def user_error(capsys, argv: list[str]) -> str:
    """Runs train.py's main as the command line does and returns what it printed for a user's mistake, checking the
    exit status (2) and that no traceback was printed."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        train.main(argv)
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "train.py: error: " in error and "Traceback" not in error, error
    return error
