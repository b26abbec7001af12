"""Text histograms (block characters, no plotting library), a linear sparkline, and a keeper of
the latest histograms a run published.

Histograms arrive as (counts, edges) pairs (numpy.histogram's output). To draw several on one
axis they are re-binned onto common columns, spreading each bin's count over the columns it
overlaps (as if the values were spread evenly inside the bin). A bin that holds anything is
never drawn empty, so a lone outlier stays visible.
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
    """`counts` over `edges`, spread onto `columns` equal columns from lo to hi."""
    counts = np.asarray(counts, dtype=float)
    edges = np.asarray(edges, dtype=float)
    out = np.zeros(columns)
    if columns < 1 or counts.size == 0:
        return out
    if not hi > lo:
        out[columns // 2] = counts.sum()
        return out
    cols = np.linspace(lo, hi, columns + 1)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c == 0:
            continue
        if not b > a:   # a degenerate bin: put it in the column holding its value
            i = min(max(int((a - lo) / (hi - lo) * columns), 0), columns - 1)
            out[i] += c
            continue
        overlap = np.clip(np.minimum(cols[1:], b) - np.maximum(cols[:-1], a), 0.0, None)
        total = overlap.sum()
        if total > 0:
            out += c * overlap / total   # the count, shared by overlap (lo..hi covers every bin)
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
    if lo < 0 < hi and columns > 2:
        zero = min(max(int(round(-lo / (hi - lo) * columns - 0.5)), 0), columns - 1)
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
    series = [s for s in series if s[1] is not None and len(s[1])]
    if not series:
        return [Text("(no histogram yet)", style="dim")]
    if label_width is None:
        label_width = max((len(s[0]) for s in series), default=0)
        label_width = label_width + 1 if label_width else 0
    max_label = 8  # the largest count, written at the right of the first row
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
                line.append(f" {_count(top)}"[:max_label], style="dim")
            lines.append(line)
    lines.append(Text(" " * label_width + axis_line(lo, hi, columns), style="dim"))
    return lines


def _count(x: float) -> str:
    return f"max {x:.0f}" if x >= 1 or x == 0 else f"max {x:.2f}"


def sparkline(values, width: int = 20) -> str:
    """The last values of a series, min to max on a linear scale, one block character each
    (groups of points are averaged so each character is one stretch of steps)."""
    if values is None or len(values) == 0 or width < 1:
        return ""
    values = np.asarray(values, dtype=float)
    if len(values) > width:
        cut = len(values) - len(values) % width
        groups = values[len(values) - cut:].reshape(width, -1)
        with np.errstate(all="ignore"):
            values = np.nanmean(groups, axis=1) if np.isfinite(groups).any() else groups[:, -1]
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
        else:
            out.append(SPARK[int(round((v - lo) / span * (len(SPARK) - 1)))])
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
