"""The installed `calcml-debug`, in a real pseudo-terminal, used as a person would.

pexpect runs the command in a pty; pyte plays the bytes it writes onto a virtual screen, so
the test reads what a person would see.
"""
import time
from pathlib import Path

import pexpect

import terminal

ROOT = Path(__file__).resolve().parent.parent
COLS, ROWS = 110, 32


class Terminal(terminal.Terminal):
    def __init__(self, args):
        super().__init__(args, size=(COLS, ROWS))

    def step_number(self) -> int:
        return int(self.wait_for(r"step (\d+)").group(1))


def test_run_pause_step_and_quit_in_a_real_terminal():
    term = Terminal(["sample_models/xor_mlp.py"])
    try:
        term.wait_for(r"Linear")                        # the layer table is up
        term.wait_for(r"RUNNING|FINISHED")
        term.child.send(" ")                             # pause
        term.wait_for(r"PAUSED|FINISHED")
        if "PAUSED" in term.text():
            before = term.step_number()
            term.child.send("n")                         # one training step
            term.wait_for(rf"step {before + 1}\b")
        term.child.send("q")
        term.child.expect(pexpect.EOF, timeout=10)
        term.raw += term.child.before or b""
    finally:
        term.child.close(force=True)
    assert term.child.exitstatus == 0
    # The terminal is left as it was: alternate screen left, cursor shown again.
    tail = term.raw[-2000:]
    assert b"\x1b[?1049l" in tail and b"\x1b[?25h" in tail


def test_quit_works_while_a_model_step_hangs(tmp_path):
    model = tmp_path / "hangs.py"
    model.write_text(
        "import time\nimport calcml as cm\nimport numpy as np\n"
        "model = cm.nn.Linear(2, 1)\n"
        "def loss(p, y):\n    time.sleep(3600)\n    return ((p - y) ** 2).mean()\n"
        "data = (np.zeros((4, 2)), np.zeros((4, 1)))\n")
    term = Terminal([str(model)])
    try:
        term.wait_for(r"RUNNING")                        # the model loaded and training started
        time.sleep(0.5)                                  # the first step is now stuck in loss()
        started = time.monotonic()
        term.child.send("q")
        term.child.expect(pexpect.EOF, timeout=10)
        # the stuck step would take an hour; quitting takes about a second (a second's grace for
        # the step, then the worker's watchdog ends it), and a busy machine may add a few
        assert time.monotonic() - started < 8.0
    finally:
        term.child.close(force=True)
    assert term.child.exitstatus == 0


def test_bad_model_file_exits_2_without_opening_the_interface(tmp_path):
    model = tmp_path / "typo.py"
    model.write_text("import calcml as cm\nmodel = cm.nn.Linear(2, 1\n")
    child = pexpect.spawn(terminal.command(), [str(model)], dimensions=(ROWS, COLS))
    output = child.read().decode()
    child.close()
    assert child.exitstatus == 2
    assert "typo.py:2" in output and "syntax error" in output
    assert "Traceback" not in output
