"""Text histograms: block characters, no plotting library.

Histograms arrive as (counts, edges) pairs (numpy.histogram's output). To draw several on one
axis they are redrawn onto common columns (see `rebin`: bar heights stay real counts, so "max"
is the number of values in the tallest bar). A bin that holds anything is never drawn empty,
so a lone outlier stays visible.
"""
from __future__ import annotations

import math

import numpy as np
from rich.text import Text

from .format import num
from .widgets.common import HALF_MAX, between, fraction

EIGHTHS = " ▁▂▃▄▅▆▇█"


def rebin(counts, edges, lo: float, hi: float, columns: int) -> np.ndarray:
    """`counts` over `edges` drawn on `columns` equal columns from lo to hi, so that a bar's
    height is a real count: a column holds the bins whose centres fall in it (their counts
    added), and a column too narrow to hold a centre shows the count of the bin under its middle.
    With columns as wide as the bins this is the histogram itself. Any finite lo < hi will do,
    −1e308..1e308 and 5e-324..1e-323 included (see `common.fraction`)."""
    counts = np.asarray(counts, dtype=float)
    edges = np.asarray(edges, dtype=float)
    out = np.zeros(max(columns, 0))
    if columns < 1 or counts.size == 0:
        return out
    if not hi > lo:
        out[columns // 2] = counts.sum()
        return out
    width = hi - lo
    scale = columns / width
    ordinary = math.isfinite(width) and math.isfinite(scale)
    with np.errstate(all="ignore"):
        if np.max(np.abs(edges)) <= HALF_MAX:
            centres = (edges[:-1] + edges[1:]) / 2
        else:                                   # edges near ±1e308: their sum would overflow
            centres = edges[:-1] / 2 + edges[1:] / 2
        column = np.floor((centres - lo) * scale if ordinary else fraction(centres, lo, hi) * columns)
        where = np.clip(np.nan_to_num(column, nan=0.0), 0, columns - 1).astype(int)
        middles = (lo + (np.arange(columns) + 0.5) / scale if ordinary
                   else between(lo, hi, (np.arange(columns) + 0.5) / columns))
    np.add.at(out, where, counts)
    holds_centre = np.zeros(columns, dtype=bool)
    holds_centre[where] = True
    inside = np.searchsorted(edges, middles, side="right") - 1
    under = (~holds_centre) & (inside >= 0) & (inside < counts.size)
    out[under] = counts[inside[under]]
    return out


def bar_rows(values: np.ndarray, top: float, rows: int) -> list:
    """Vertical bars `rows` characters tall, one column per value, scaled so `top` fills them."""
    levels = rows * 8
    if top > 0:
        heights = np.ceil(np.asarray(values) / top * levels - 1e-9).astype(int)
    else:
        heights = np.zeros(len(values), dtype=int)
    heights = np.clip(heights, 0, levels)
    heights[(np.asarray(values) > 0) & (heights == 0)] = 1   # anything at all shows
    lines = []
    for r in range(rows):
        floor = (rows - 1 - r) * 8
        lines.append("".join(EIGHTHS[min(max(h - floor, 0), 8)] for h in heights))
    return lines


def axis_line(lo: float, hi: float, columns: int) -> str:
    """The low edge at the left, the high edge at the right, and '0' under zero if in between."""
    left, right = num(lo), num(hi)
    line = [" "] * columns
    zero = None
    if lo < 0 < hi and columns > 2 and math.isfinite(lo) and math.isfinite(hi):
        zero = min(max(int(round(float(fraction(0.0, lo, hi)) * columns - 0.5)), 0), columns - 1)
    for i, ch in enumerate(left[:columns]):
        line[i] = ch
    start = max(columns - len(right), 0)
    for i, ch in enumerate(right[:columns]):
        line[start + i] = ch
    if zero is not None and len(left) + 1 < zero < start - 1:
        line[zero] = "0"
    return "".join(line)


def histogram_lines(series: list, width: int, rows: int = 3, label_width: int | None = None) -> list:
    """Text lines drawing one or more histograms on a shared axis and a shared count scale.

    series: (label, counts, edges, style) tuples; the last line is the axis. With one series and
    no label, the bars take the whole width."""
    series = [s for s in series if s[1] is not None and len(s[1]) and _finite_ends(s[2])]
    if not series:
        return [Text("(no histogram yet)", style="dim")]
    if label_width is None:
        label_width = max((len(s[0]) for s in series), default=0)
        label_width = label_width + 1 if label_width else 0
    # the largest count is written at the right of the first row; no bar holds more than the total
    max_label = len(" " + _count(max(float(np.sum(s[1])) for s in series)))
    columns = max(width - label_width - max_label, 8)
    lo = min(float(np.asarray(s[2])[0]) for s in series)
    hi = max(float(np.asarray(s[2])[-1]) for s in series)
    binned = [rebin(s[1], s[2], lo, hi, columns) for s in series]
    top = max(float(b.max()) for b in binned)
    lines = []
    for (label, counts, edges, style), values in zip(series, binned):
        for r, row in enumerate(bar_rows(values, top, rows)):
            line = Text(label.ljust(label_width) if r == 0 else " " * label_width, style="dim")
            line.append(row, style=style)
            if r == 0 and lines == []:
                line.append(" " + _count(top), style="dim")
            lines.append(line)
    lines.append(Text(" " * label_width + axis_line(lo, hi, columns), style="dim"))
    return lines


def _count(x: float) -> str:
    return f"max {x:.0f}"


def _finite_ends(edges) -> bool:
    """Whether a histogram's edges have finite ends (calcml's always do; anything else is not drawn)."""
    edges = np.asarray(edges, dtype=float) if edges is not None else np.zeros(0)
    return edges.size >= 2 and math.isfinite(edges[0]) and math.isfinite(edges[-1])
