"""Records as plain data, and how a number that is not finite is written: one place for both.

The records (snapshot.py, diagnostics.py, tracesummary.py) are frozen msgspec Structs, each
declaration its only schema. `plain` turns one (or anything holding them) into dicts, lists,
numbers and strings; the two formats differ only in how NaN and ±inf are written:

- JSON documents a person or a program reads (the `--json` report) write null (`for_json`):
  JSON has no NaN or Infinity, and null is what every JSON reader accepts.
- The wire between the training process and the interface must give back exactly what was sent,
  so it writes the strings 'nan', 'inf' and '-inf' (`for_wire`); decoding reads them back into
  the float fields they came from (msgspec's lax mode, `wire.py`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated

import msgspec
import numpy as np

# Whole numbers as the records declare them: what a 64-bit integer holds, and counts and sizes,
# which are never negative (checked when a frame is read).
Int = Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Counts(np.ndarray):
    """A histogram's counts: a list of whole numbers on the wire, an integer array here."""


class Edges(np.ndarray):
    """A histogram's bin edges: a list of numbers on the wire, a float array here."""


def enc_hook(obj):
    """What msgspec cannot write by itself: numpy arrays and numbers, read-only mappings, and
    sequences built on demand (a step's layers)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence):
        return list(obj)
    raise NotImplementedError(f"cannot write a {type(obj).__name__}")


def dec_hook(kind, obj):
    if kind is Counts:
        return np.asarray(msgspec.convert(obj, list[Count]), dtype=np.int64).view(Counts)
    if kind is Edges:
        return np.asarray(msgspec.convert(obj, list[float], strict=False), dtype=float).view(Edges)
    raise NotImplementedError(f"cannot read a {kind}")


def plain(obj):
    """`obj` as dicts, lists, numbers and strings (NaN and ±inf still floats)."""
    return msgspec.to_builtins(obj, enc_hook=enc_hook)


def json_number(x) -> float | None:
    """x as a float for a JSON document; None for a missing or non-finite one."""
    return float(x) if x is not None and math.isfinite(x) else None


def wire_number(x):
    """x for the wire: a float, or 'nan', 'inf', '-inf' (None stays None)."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def for_json(value):
    """Plain data with every non-finite float inside it made None."""
    return _numbers(value, json_number)


def for_wire(value):
    """Plain data with every non-finite float inside it made 'nan', 'inf' or '-inf'."""
    return _numbers(value, wire_number)


def _numbers(value, write):
    if isinstance(value, float):
        return value if math.isfinite(value) else write(value)
    if isinstance(value, dict):
        return {k: _numbers(v, write) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        try:   # a long series of numbers: if their sum is finite, every one of them is
            if math.isfinite(sum(value)):
                return value
        except (TypeError, OverflowError):   # not all numbers (None, strings, lists), or huge ints
            pass
        return [_numbers(v, write) for v in value]
    return value
