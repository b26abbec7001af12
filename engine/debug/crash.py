"""Crash files: when calcml itself fails, a person gets a short note and the details go here
(a file only its owner can read, since a traceback's local values may hold their data)."""
from __future__ import annotations

import os
import tempfile
import traceback


def write_crash_file(error: BaseException | None = None, text: str | None = None) -> str:
    """Write `error`'s traceback (and/or `text`) to a new calcml-crash-*.txt, mode 0600; its path."""
    fd, path = tempfile.mkstemp(prefix="calcml-crash-", suffix=".txt")   # mkstemp: mode 0600
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
        if text:
            f.write(text.rstrip("\n") + "\n")
        if error is not None:
            traceback.print_exception(error, file=f)
    return path
