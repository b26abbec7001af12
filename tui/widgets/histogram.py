"""Text histograms (block characters, no plotting library), a linear sparkline, and a keeper of
the latest histograms a run published.

Histograms arrive as (counts, edges) pairs (numpy.histogram's output). To draw several on one
axis they are redrawn onto common columns (see `rebin`: bar heights stay real counts, so "max"
is the number of values in the tallest bar). A bin that holds anything is never drawn empty,
so a lone outlier stays visible.
"""
from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual.widget import Widget

from ..format import num

EIGHTHS = " ▁▂▃▄▅▆▇█"
SPARK = "▁▂▃▄▅▆▇█"


def rebin(counts, edges, lo: float, hi: float, columns: int) -> np.ndarray:
    """`counts` over `edges` drawn on `columns` equal columns from lo to hi, so that a bar's
    height is a real count: a column holds the bins whose centres fall in it (their counts
    added), and a column too narrow to hold a centre shows the count of the bin under its middle.
    With columns as wide as the bins this is the histogram itself. Any finite lo < hi will do,
    −1e308..1e308 and 5e-324..1e-323 included (see `_fraction`)."""
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
        if np.max(np.abs(edges)) <= _HALF_MAX:
            centres = (edges[:-1] + edges[1:]) / 2
        else:                                   # edges near ±1e308: their sum would overflow
            centres = edges[:-1] / 2 + edges[1:] / 2
        column = np.floor((centres - lo) * scale if ordinary else _fraction(centres, lo, hi) * columns)
        where = np.clip(np.nan_to_num(column, nan=0.0), 0, columns - 1).astype(int)
        middles = (lo + (np.arange(columns) + 0.5) / scale if ordinary
                   else _between(lo, hi, (np.arange(columns) + 0.5) / columns))
    np.add.at(out, where, counts)
    holds_centre = np.zeros(columns, dtype=bool)
    holds_centre[where] = True
    inside = np.searchsorted(edges, middles, side="right") - 1
    under = (~holds_centre) & (inside >= 0) & (inside < counts.size)
    out[under] = counts[inside[under]]
    return out


_HALF_MAX = float(np.finfo(np.float64).max) / 2
_GROW = 2.0 ** 600   # a power of 2: scaling by it is exact


def _fraction(x, lo: float, hi: float):
    """(x − lo)/(hi − lo) for finite lo < hi (x a number or an array): as written for every
    ordinary range; in halves where hi − lo overflows (−1e308..1e308), and scaled up by 2⁶⁰⁰
    where 1/(hi − lo) would (denormal ends)."""
    width = hi - lo
    if math.isfinite(width) and math.isfinite(1 / width):
        return (x - lo) / width
    factor = 0.5 if not math.isfinite(width) else _GROW
    with np.errstate(all="ignore"):
        return (x * factor - lo * factor) / (hi * factor - lo * factor)


def _between(lo: float, hi: float, t):
    """lo + t·(hi − lo) for t in [0, 1], as lo·(1 − t) + hi·t where hi − lo overflows."""
    width = hi - lo
    with np.errstate(all="ignore"):
        if math.isfinite(width):
            return lo + t * width
        return lo * (1 - t) + hi * t


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
        zero = min(max(int(round(float(_fraction(0.0, lo, hi)) * columns - 0.5)), 0), columns - 1)
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


def group_means(values, width: int) -> np.ndarray:
    """The last points of a series averaged in `width` equal groups, so that each character of a
    sparkline is one stretch of steps. Missing (NaN) points are left out; a group with none
    stays NaN (a gap)."""
    values = np.asarray(values, dtype=float)
    if len(values) <= width:
        return values
    cut = len(values) - len(values) % width
    groups = values[len(values) - cut:].reshape(width, -1)
    present = np.isfinite(groups)
    counts = present.sum(axis=1)
    kept = np.where(present, groups, 0.0)
    with np.errstate(all="ignore"):
        means = np.where(counts > 0, kept.sum(axis=1) / np.maximum(counts, 1), np.nan)
        over = (counts > 0) & ~np.isfinite(means)   # finite points whose sum overflowed (1e308s):
        if over.any():                              # divided first, their mean is finite again
            means[over] = (kept[over] / counts[over, None]).sum(axis=1)
    return means


def sparkline(values, width: int = 20) -> str:
    """The last values of a series, min to max on a linear scale, one block character each."""
    if values is None or len(values) == 0 or width < 1:
        return ""
    values = group_means(values, width)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return " " * len(values)
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif span <= 1e-12 * max(abs(hi), 1e-300):
            out.append(SPARK[3])
        else:   # span may be inf (−1e308..1e308): _fraction measures it in halves
            level = int(round(float(_fraction(v, lo, hi)) * (len(SPARK) - 1)))
            out.append(SPARK[min(max(level, 0), len(SPARK) - 1)])
    return "".join(out)


def first_last(history: dict, name: str):
    """(first step, first finite value, last finite value) of a history series, or None."""
    values, steps = history.get(name), history.get("step")
    if values is None or steps is None or len(values) == 0:
        return None
    ok = np.isfinite(values)
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    return int(steps[idx[0]]), float(values[idx[0]]), float(values[idx[-1]])


class HistogramKeeper:
    """The latest histograms seen (they come only on some steps) and the step they are from."""

    def __init__(self):
        self.histograms: dict | None = None
        self.step: int | None = None

    def update(self, snapshot) -> bool:
        """Keep the snapshot's histograms if it has any; True if they are new."""
        if snapshot is None or not snapshot.histograms:
            return False
        if self.histograms is snapshot.histograms:
            return False
        self.histograms, self.step = snapshot.histograms, snapshot.step
        return True

    def seed(self, histograms: dict | None, step: int) -> None:
        """Start from these (e.g. step 0's) if nothing newer has been seen."""
        if self.histograms is None and histograms:
            self.histograms, self.step = histograms, step

    def get(self, key: str):
        return (self.histograms or {}).get(key)


class HistogramPanel(Widget):
    """A title line, one or more histograms on a shared axis, and an optional note."""

    DEFAULT_CSS = """
    HistogramPanel { height: auto; width: 1fr; text-wrap: nowrap; text-overflow: clip; }
    """

    def __init__(self, rows: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows
        self._title: Text = Text()
        self._series: list = []
        self._note: Text | None = None

    def show(self, title, series: list, note=None) -> None:
        self._title = title if isinstance(title, Text) else Text(str(title))
        self._series = series
        self._note = (note if isinstance(note, Text) else Text(note, style="dim")) if note else None
        self.refresh(layout=True)

    def lines(self, width: int) -> list:
        out = [self._title]
        out += histogram_lines(self._series, width, self.rows)
        if self._note is not None:
            out.append(self._note)
        return out

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.lines(max(width, 10)))

    def render(self) -> Text:
        lines = self.lines(max(self.size.width, 10))
        text = Text("\n").join(lines)
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text
