"""Textual's terminal driver, made safe for a terminal that closes under it.

When a terminal window closes, the kernel sends the session both SIGHUP and SIGCONT, and every
later write to the terminal fails. Textual's driver, unchanged, then (1) resumes application mode
on that SIGCONT although it never suspended, starting a second output thread beside the first,
and (2) lets an output thread die on the failed write, after which the output queue fills and
shutting down waits forever on it. Here the driver resumes only after its own suspend (Ctrl+Z),
and writes to a terminal that has gone are dropped: there is no one left to read them.
"""
from __future__ import annotations

import sys

from textual import constants
from textual.drivers.linux_driver import LinuxDriver


class _Terminal:
    """The driver's output file, where a failed write or flush (the terminal has gone) is
    dropped instead of ending the thread that writes."""

    def __init__(self, file):
        self._file = file

    def write(self, text: str) -> None:
        try:
            self._file.write(text)
        except (OSError, ValueError):   # EIO after a hangup; ValueError once the file is closed
            pass

    def flush(self) -> None:
        try:
            self._file.flush()
        except (OSError, ValueError):
            pass

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return self._file.isatty()


class TerminalDriver(LinuxDriver):
    """LinuxDriver that survives its terminal closing (see the module's note)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._file = _Terminal(self._file)
        self._suspended = False

    def _sigtstp_application(self, *args) -> None:
        self._suspended = self._auto_restart
        super()._sigtstp_application(*args)

    def _sigcont_application(self, *args) -> None:
        if self._suspended:   # a SIGCONT that follows no suspend (a hangup sends one) changes nothing
            self._suspended = False
            super()._sigcont_application(*args)


def terminal_driver():
    """The driver for a person's terminal: this one where Textual would use LinuxDriver (Linux,
    macOS), else Textual's own choice (None), as when TEXTUAL_DRIVER names one."""
    if constants.DRIVER is not None or sys.platform.startswith("win"):
        return None
    return TerminalDriver
