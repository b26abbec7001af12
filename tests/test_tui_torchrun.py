"""`torchrun --nproc-per-node 2 --no-python calcml-debug train.py` in a real terminal: rank 0
opens the interface there, the other rank trains headless and writes nothing on the terminal
(its output goes to a log file), both ranks are shown, and a pause, a step and q from the
interface act on both (2 gloo processes, the script unmodified)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import signal
import sys
import tempfile
import time

import pytest

import terminal
from test_serve_torchrun import CALCML_DEBUG, SCRIPT, _gloo

pytestmark = [pytest.mark.skipif(not _gloo(), reason="no torch.distributed with gloo here"),
              pytest.mark.skipif(CALCML_DEBUG is None, reason="the calcml-debug command is not installed")]

# The same DDP regression, with a line printed by every rank at its first step.
PRINTING = SCRIPT.replace("    loss.backward()\n",
                          "    loss.backward()\n    if step == 0:\n        print(f'hello from rank {rank}', flush=True)\n")
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python"]
HEADER = re.compile(r"(RUNNING|PAUSED)\s+step (\d+).*ranks 2: loss \S+ … \S+(.*)")


def header(term) -> tuple | None:
    """(state, rank 0's step, whether the ranks are at different steps) from the status line."""
    found = HEADER.search(term.screen.display[1])
    if found is None:
        return None
    return found.group(1), int(found.group(2)), "steps " in found.group(3)


def wait_header(term, condition, timeout=60.0, what="the header"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        seen = header(term)
        if seen is not None and condition(*seen):
            return seen
        if not term.pump(0.1):
            break
    raise AssertionError(f"{what} never showed; the screen was:\n{term.text()}")


def test_rank_0_shows_the_interface_and_the_other_rank_follows_it_silently():
    folder = tempfile.mkdtemp(prefix="cm", dir="/tmp")
    script, stop = os.path.join(folder, "train.py"), os.path.join(folder, "stop")
    with open(script, "w") as f:
        f.write(PRINTING)
    term = terminal.Terminal([*TORCHRUN, CALCML_DEBUG, script, "--", stop], cwd=folder, size=(120, 36),
                             program=sys.executable, env={"OMP_NUM_THREADS": "1"})
    try:
        # both ranks heard from: the header shows the loss across them
        wait_header(term, lambda state, step, apart: state == "RUNNING" and step > 3, timeout=180,
                    what="rank 0 running with both ranks")
        # a pause holds both ranks at one step
        term.child.send(" ")
        _, held, _ = wait_header(term, lambda state, step, apart: state == "PAUSED" and not apart,
                                 what="both ranks paused at one step")
        term.pump(1.5)
        assert header(term) == ("PAUSED", held, False), term.text()
        # one step moves both by exactly one
        term.child.send("n")
        wait_header(term, lambda state, step, apart: step == held + 1 and not apart, what="one step on both")
        term.pump(1.0)
        assert header(term) == ("PAUSED", held + 1, False), term.text()
        term.child.send("q")
        assert term.finish(timeout=90) == 0, term.output()[-3000:]
        output = term.output()
        assert output.count("\x1b[?1049h") == 1      # one interface took the screen
        tail = output[output.rfind("\x1b[?1049l"):]
        assert "Traceback" not in tail
        # rank 1's print went to its log, named as the interface closed, not to the terminal
        log = re.search(r"the other ranks' output is in (\S+)", tail).group(1)
        assert "hello from rank 1" not in output
        with open(log) as f:
            assert "hello from rank 1" in f.read()
    finally:
        open(stop, "w").close()
        term.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_model_file_under_torchrun_is_refused_once():
    path = os.path.join(terminal.ROOT, "sample_models", "xor_mlp.py")
    run = subprocess.Popen([sys.executable, *TORCHRUN, CALCML_DEBUG, path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                           env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
    try:
        output, _ = run.communicate(timeout=180)
    finally:
        if run.poll() is None:       # (its ranks with it)
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode != 0
    said = "is a model file, which trains in one process: under torchrun, give a training script"
    assert output.count(said) == 1, output
