"""Number and table formatting shared by the headless report and the interface."""
from __future__ import annotations

from rich.text import Text

import math
import re


def as_float(x) -> float:
    """float(x), with ±inf for an integer past the largest float (where float() raises)."""
    try:
        return float(x)
    except OverflowError:   # an int past the largest float (10**400)
        return math.inf if x > 0 else -math.inf


def num(x, digits: int = 3) -> str:
    """Short, readable numbers: 0.0123, 1.2e-07, 3.4e+05, '-' for missing, 'nan'/'inf' as is.
    At most about 10 characters for any float (1.80e+308, 4.94e-324); an integer too large for a
    float is 'inf'."""
    if x is None:
        return "-"
    x = as_float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.{max(digits - 1, 1)}e}"


TYPE_WIDTH = 18   # the layer tables' type column: MultiheadAttention fits


def short_type(name: str, width: int = TYPE_WIDTH) -> str:
    """A layer's class name for a table's type column: whole where it fits, else its last words
    (the kind of layer it is) after '…': NonDynamicallyQuantizableLinear → …QuantizableLinear."""
    if len(name) <= width:
        return name
    words = re.findall(r"[A-Z]+[a-z0-9]*|[^A-Z]+", name)
    tail = ""
    while words and len(words[-1]) + len(tail) < width:
        tail = words.pop() + tail
    return "…" + (tail or name[-(width - 1):])


def pct(x) -> str:
    """A fraction as a percentage, '-' for missing: 0.25 -> '25%'. NaN and inf, and fractions
    past 100 (which no fraction should be, but then are shown short), go through `num`."""
    if x is None:
        return "-"
    x = as_float(x)
    if not math.isfinite(x):
        return num(x)
    if abs(x) < 100:
        return f"{x:.0%}"
    mantissa, exponent = f"{x:.2e}".split("e")   # x·100 written from x's digits: it may not be a float
    return f"{mantissa}e{int(exponent) + 2:+03d}%"


LAYER_HEADERS = ("layer", "type", "shape", "‖W‖", "‖∇W‖ data", "‖∇W‖ pen", "upd/W", "f' mean", "dead", "sat",
                 "in/out")


def layer_rows(layers) -> list:
    """One row per layer of text cells, in LAYER_HEADERS order ('-' where not applicable)."""
    rows = []
    for layer in layers:
        w = layer.params.get("weight") or next(iter(layer.params.values()), None)
        shape = "x".join(str(n) for n in w.shape) if w is not None else (
            "x".join(str(n) for n in layer.output_shape[1:]) if layer.output_shape else "-")
        rows.append((
            layer.name, short_type(layer.type), shape,
            num(w.weight_norm) if w else "-", num(w.grad_norm) if w else "-",
            num(w.penalty_grad_norm) if w else "-", num(w.update_ratio) if w else "-",
            num(layer.mean_local_derivative), pct(layer.dead_fraction), pct(layer.saturated_fraction),
            num(layer.grad_ratio),
        ))
    return rows


def view_title(view: str, subject: str, state, lr_label: str = "lr") -> Text:
    """A live view's head line: its name, what it is about (the optimiser, the model), the lr
    (or what stands for it), the step and where training stands."""
    snap = state.snapshot
    text = Text()
    text.append(f"{view}  ", style="bold magenta")
    text.append(subject, style="bold")
    if snap is not None:
        text.append(f"  {lr_label} {num(snap.lr)}")
        text.append(f"   step {snap.step}   {state.state}", style="dim")
    return text
