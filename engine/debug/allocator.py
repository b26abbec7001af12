"""Keep the C allocator from handing freed array memory back to the system every step.

A training step allocates and frees megabytes of numpy arrays (activations, gradients). glibc's
malloc returns the top of its heap to the system whenever more than a little is free there,
so the next step takes every page back with a page fault: measured on the 784-256-256-10 MLP,
several hundred faults per debugger step. Asking glibc to keep 64 MiB of padding at the top of
the heap (M_TOP_PAD) stops that, for at most that much extra resident memory. calcml-debug does
this in its own processes (the training worker and the headless run); a program that uses
`calcml.debug.Session` directly can call `keep_freed_memory()` itself.

Setting any malloc parameter turns off glibc's sliding mmap threshold, which otherwise rises to
the size of the largest array freed so far. Left where it starts (128 KiB), every array above that
size (a 784x256 float64 weight gradient is 1.6 MB) would get fresh pages from the system each time
it is allocated: hundreds of page faults per step, more than without the setting. So the threshold
is set too, to glibc's own upper limit for it (32 MiB): arrays up to that size come from the heap.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
TOP_PAD_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 32 << 20

_done = None


def keep_freed_memory() -> bool:
    """Set glibc's M_MMAP_THRESHOLD and M_TOP_PAD once per process; False where there is no glibc (macOS, Windows, musl)."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                         and libc.mallopt(M_TOP_PAD, TOP_PAD_BYTES))
        except (OSError, AttributeError):
            _done = False
    return _done


def kept() -> bool:
    """Whether this process keeps freed memory (keep_freed_memory() was called and worked)."""
    return bool(_done)
