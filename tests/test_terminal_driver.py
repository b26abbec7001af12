"""The terminal driver when the terminal closes under it: writes that fail are dropped, so the
output thread lives and shutting down finishes; a SIGCONT that follows no suspend (the kernel
sends one with the hangup) starts nothing."""
import asyncio
import errno
import signal
import threading

import pytest
from textual.drivers._writer_thread import MAX_QUEUED_WRITES, WriterThread

from calcml.tui.terminal_driver import TerminalDriver, _Terminal


class HungUp:
    """A terminal after a hangup: every write and flush fails with EIO."""
    def write(self, text):
        raise OSError(errno.EIO, "Input/output error")

    def flush(self):
        raise OSError(errno.EIO, "Input/output error")

    def fileno(self):
        return 2

    def isatty(self):
        return True


def stops_within(writer: WriterThread, seconds: float) -> bool:
    """Whether writing well past the queue's length and then stopping finishes in time."""
    def work():
        for _ in range(3 * MAX_QUEUED_WRITES):
            writer.write("\x1b[?25h")
        writer.stop()
    runner = threading.Thread(target=work, daemon=True)
    runner.start()
    runner.join(seconds)
    return not runner.is_alive()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_textual_alone_would_hang_on_a_closed_terminal():
    """The failure the driver exists for: the output thread dies on the first failed write, the
    queue fills and stopping waits forever (the thread is a daemon: it dies with the tests)."""
    writer = WriterThread(HungUp())
    writer.start()
    assert not stops_within(writer, 2.0)


def test_writes_to_a_closed_terminal_are_dropped_and_stopping_finishes():
    writer = WriterThread(_Terminal(HungUp()))
    writer.start()
    assert stops_within(writer, 10.0)
    assert not writer.is_alive()


@pytest.fixture
def driver(monkeypatch):
    saved = {s: signal.getsignal(s) for s in (signal.SIGTSTP, signal.SIGCONT)}
    async def make():    # a driver keeps the loop it was made in
        return TerminalDriver(object(), debug=False, mouse=False, size=(80, 24))
    made = asyncio.run(make())
    resumed = []
    monkeypatch.setattr(made, "resume_application_mode", lambda: resumed.append(True))
    yield made, resumed
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_sigcont_after_no_suspend_resumes_nothing(driver):
    made, resumed = driver
    made._sigcont_application(signal.SIGCONT, None)
    assert resumed == []


def test_a_sigcont_after_its_own_suspend_resumes(driver, monkeypatch):
    made, resumed = driver
    monkeypatch.setattr(made, "suspend_application_mode", lambda: None)
    monkeypatch.setattr("os.kill", lambda pid, signum: None)   # the SIGSTOP a suspend sends itself
    made._sigtstp_application(signal.SIGTSTP, None)
    made._sigcont_application(signal.SIGCONT, None)
    assert resumed == [True]
    made._sigcont_application(signal.SIGCONT, None)           # a second one, unpaired
    assert resumed == [True]
