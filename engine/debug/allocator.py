"""Keep the C allocator from handing freed array memory back to the system every step.

A training step allocates and frees megabytes of numpy arrays (activations, gradients). glibc's
malloc returns the top of its heap to the system whenever more than a little is free there,
so the next step takes every page back with a page fault: measured on the 784-256-256-10 MLP,
several hundred faults per debugger step. Asking glibc to keep 64 MiB of padding at the top of
the heap (M_TOP_PAD) stops that, for at most that much extra resident memory. calcml-debug does
this in its own processes (the training worker and the headless run); a program that uses
`calcml.debug.Session` directly can call `keep_freed_memory()` itself.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TOP_PAD = -2
TOP_PAD_BYTES = 64 << 20

_done = None


def keep_freed_memory() -> bool:
    """Set glibc's M_TOP_PAD once per process; False where there is no glibc (macOS, Windows, musl)."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _done = bool(libc.mallopt(M_TOP_PAD, TOP_PAD_BYTES))
        except (OSError, AttributeError):
            _done = False
    return _done
