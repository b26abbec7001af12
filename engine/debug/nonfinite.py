"""How a number that is not finite (NaN, ±inf) is written: one rule per format, in one place.

JSON documents a person or a program reads (the `--json` report, records' `to_dict`) write
null: JSON has no NaN or Infinity, and null is what every JSON reader accepts. The wire between
the training process and the interface must give back exactly what was sent, so it writes the
strings 'nan', 'inf' and '-inf', which `float()` reads back.
"""
from __future__ import annotations

import math


def json_number(x) -> float | None:
    """x as a float for a JSON document; None for a missing or non-finite one."""
    return float(x) if x is not None and math.isfinite(x) else None


def json_clean(value):
    """`value` with every non-finite float inside it (dicts, lists, tuples) made None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    return value


def wire_number(x):
    """x for the wire: a float, or 'nan', 'inf', '-inf' (None stays None)."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def from_wire_number(x) -> float | None:
    """What wire_number wrote, back as a float (None stays None)."""
    return None if x is None else float(x)
