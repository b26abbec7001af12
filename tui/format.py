"""Number and table formatting shared by the headless report and the interface."""
from __future__ import annotations

import math


def num(x, digits: int = 3) -> str:
    """Short, readable numbers: 0.0123, 1.2e-07, 3.4e+05, '-' for missing, 'nan'/'inf' as is."""
    if x is None:
        return "-"
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.{max(digits - 1, 1)}e}"


def pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


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
            layer.name, layer.type, shape,
            num(w.weight_norm) if w else "-", num(w.grad_norm) if w else "-",
            num(w.penalty_grad_norm) if w else "-", num(w.update_ratio) if w else "-",
            num(layer.mean_local_derivative), pct(layer.dead_fraction), pct(layer.saturated_fraction),
            num(layer.grad_ratio),
        ))
    return rows
