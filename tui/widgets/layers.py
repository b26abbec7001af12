"""The layer table: one row per layer, the numbers that say whether it is learning."""
from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual.widgets import DataTable

from ..format import num, pct
from .histogram import group_means

# A symbol and a colour per warning kind, so a glance at the table says what is wrong where.
WARNING_MARKS = {
    "vanishing_gradient": ("▼", "yellow"),
    "exploding_gradient": ("▲", "red"),
    "dead_relu": ("✖", "magenta"),
    "saturation": ("≈", "yellow"),
    "non_finite": ("!", "bold red"),
    "loss_diverging": ("↗", "red"),
    "lr_too_large": ("»", "red"),
}
COLUMNS = (("mark", " "), ("layer", "layer"), ("type", "type"), ("shape", "shape"), ("w", "‖W‖"),
           ("g", "‖∇W‖"), ("pen", "‖∇pen‖"), ("upd", "upd/W"), ("health", "activation"),
           ("trend", "trend"))
SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int = 10) -> str:
    """The last values of a series on a log scale, one block character each."""
    if values is None or len(values) == 0:
        return ""
    values = group_means(np.asarray(values, dtype=float)[-width * 4:], width)
    with np.errstate(all="ignore"):
        logs = np.log10(np.where(values > 0, values, np.nan))
    finite = logs[np.isfinite(logs)]
    if finite.size == 0:
        return " " * len(logs)
    lo, hi = finite.min(), finite.max()
    span = hi - lo if hi > lo else 1.0
    out = []
    for v in logs:
        out.append(" " if not math.isfinite(v) else SPARK[int(round((v - lo) / span * (len(SPARK) - 1)))])
    return "".join(out)


def health(layer) -> str:
    """What an activation layer does to the gradient: its mean derivative, and dead/saturated units."""
    if layer.activation is None:
        return ""
    parts = [f"f' {num(layer.mean_local_derivative, 2)}"]
    if layer.dead_fraction is not None:
        parts.append(f"dead {pct(layer.dead_fraction)}")
    if layer.saturated_fraction is not None:
        parts.append(f"sat {pct(layer.saturated_fraction)}")
    return " ".join(parts)


def marks_by_layer(conditions) -> dict:
    out: dict = {}
    for c in conditions:
        out.setdefault(c.layer, []).append(c.kind)
    return out


class LayerTable(DataTable):
    DEFAULT_CSS = """
    LayerTable { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._rows: list = []
        self._shown: dict = {}   # (row, column) -> the cell last drawn there

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_layer(self) -> str | None:
        if not self._rows or self.cursor_row is None or self.cursor_row >= len(self._rows):
            return None
        return self._rows[self.cursor_row]

    def show(self, snapshot, history: dict) -> None:
        if snapshot is None:
            return
        names = [layer.name for layer in snapshot.layers]
        if names != self._rows:
            self.clear()
            self._shown = {}
            self._rows = names
            for layer in snapshot.layers:
                self.add_row(*self._cells(layer, {}, history), key=layer.name)
        marks = marks_by_layer(snapshot.holding)
        for layer in snapshot.layers:
            for (key, _), cell in zip(COLUMNS, self._cells(layer, marks, history)):
                if self._shown.get((layer.name, key)) != cell:  # redraw only what changed
                    self._shown[(layer.name, key)] = cell
                    self.update_cell(layer.name, key, cell, update_width=True)

    def _cells(self, layer, marks: dict, history: dict) -> tuple:
        w = layer.params.get("weight") or next(iter(layer.params.values()), None)
        kinds = marks.get(layer.name, [])
        mark = Text()
        for kind in kinds:
            symbol, style = WARNING_MARKS.get(kind, ("?", "red"))
            mark.append(symbol, style=style)
        name_style = WARNING_MARKS[kinds[0]][1] if kinds and kinds[0] in WARNING_MARKS else ""
        shape = "×".join(str(n) for n in w.shape) if w is not None else ""
        trend = sparkline(history.get(f"{w.name}.grad_norm")) if w is not None else ""
        return (mark, Text(layer.name, style=name_style), layer.type, shape,
                num(w.weight_norm) if w else "", num(w.grad_norm) if w else "",
                num(w.penalty_grad_norm) if w else "", num(w.update_ratio) if w else "",
                health(layer), trend)
