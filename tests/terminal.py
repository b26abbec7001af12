"""The installed `calcml-debug` in a real pseudo-terminal: pexpect runs it in a pty, and pyte
plays the bytes it writes onto a virtual screen, so a test reads what a person would see."""
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pexpect
import pyte
import pytest

ROOT = Path(__file__).resolve().parent.parent


def command() -> str:
    script = shutil.which("calcml-debug") or os.path.join(os.path.dirname(sys.executable), "calcml-debug")
    if not os.path.exists(script):
        pytest.fail("calcml-debug is not installed: pip install -e '.[test]'")
    return script


class Terminal:
    """calcml-debug in a pseudo-terminal; pyte shows what a person would see."""

    def __init__(self, args, cwd=ROOT, size=(110, 32), program=None, env=None):
        """`program`: what runs calcml-debug instead of running it directly (torchrun)."""
        cols, rows = size
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""
        env = dict(os.environ, **(env or {}), TERM="xterm-256color", COLUMNS=str(cols), LINES=str(rows))
        self.child = pexpect.spawn(program or command(), [str(a) for a in args], dimensions=(rows, cols), env=env,
                                   cwd=str(cwd))
        self.workers: list = []   # the training processes' ids, when a test notes them

    def pump(self, seconds=0.1) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.05)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return False
            self.raw += data
            self.stream.feed(data)
        return True

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, pattern, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = re.search(pattern, self.text())
            if found:
                return found
            if not self.pump(0.1):
                break
        raise AssertionError(f"{pattern!r} never appeared; the screen was:\n{self.text()}")

    def wait_for_bytes(self, data: bytes, since: int = 0, timeout: float = 30.0) -> None:
        """Read until `data` has been written after byte `since` of the output (what a screen
        shows may be left over from before; the bytes say what was written since)."""
        end = time.monotonic() + timeout
        while data not in self.raw[since:]:
            if time.monotonic() > end or not self.pump(0.1):
                raise AssertionError(f"{data!r} was not written; the screen was:\n{self.text()}")

    def finish(self, timeout=30.0) -> int:
        """Read to the end; the exit status (128 + N for a signal, as a shell reports it)."""
        end = time.monotonic() + timeout
        while self.pump(0.2):
            if time.monotonic() > end:
                raise AssertionError(f"calcml-debug did not end; the screen was:\n{self.text()}")
        self.child.close()
        status = self.child.exitstatus
        return status if status is not None else 128 + self.child.signalstatus

    def output(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def hang_up(self) -> None:
        """Close the terminal window: the pty's master end closes, the kernel hangs up the
        terminal (SIGHUP and SIGCONT to calcml-debug) and its writes fail from then on. Closed
        through pexpect's own file object and marked closed, so nothing closes the descriptor
        again later (by then its number may be another terminal's)."""
        self.child.ptyproc.fileobj.close()
        self.child.ptyproc.closed = True
        self.child.closed = True

    def close(self) -> None:
        if not self.child.closed:
            if self.child.isalive():
                self.child.close(force=True)
        elif self.child.isalive():   # hung up, and still running
            os.kill(self.child.pid, signal.SIGKILL)
