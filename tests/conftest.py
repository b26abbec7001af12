"""The tests' shared helpers are plain modules in this folder, imported by name from any test file:

    fd.py          central finite differences in float64 (first order, H·v, the Hessian)
    helpers.py     make_spec: a ModelSpec for a model, loss and data built in the test
    tui_helpers.py sessions to drive in the interface tests, settle, the screen as text
    terminal.py    the pseudo-terminal driver of the end-to-end tests
    recordings.py  record: a recording of a sample model's run, made in-process

tests/ has no __init__.py, so pytest's default import mode ("prepend") puts this folder first on
sys.path when it loads this file, before it collects any test file: `from fd import numeric_grad`
works under `python -m pytest` from the repository root and when one file is run alone
(`python -m pytest tests/test_bayes.py`), with nothing added to sys.path by hand.
"""

import pytest

# The interface's tests (Textual's Pilot, snapshots, calcml-debug in a real pseudo-terminal) are
# most of the suite's time: `-m "not interface"` leaves them out.
INTERFACE_FILES = ("test_exit_paths.py", "test_terminal_driver.py", "test_serve_cli.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name.startswith("test_tui_") or item.path.name in INTERFACE_FILES:
            item.add_marker(pytest.mark.interface)
