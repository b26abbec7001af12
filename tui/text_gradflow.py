"""The gradient-flow view's text (the main screen): log10 ‖∇W‖ of every weighted layer as a
heat strip of layers × steps, and beside it each layer's bar at the latest step (the picture
`plot_grad_flow` draws), with a scale that says which colour is which power of ten.

Why a heat strip and not one line per layer: with ten or more layers, lines in as many colours
cannot be told apart and their legend covers the plot; a strip gives every layer its own row,
named truthfully, at any depth. Why Rich text and not plotext: a strip is one coloured block per
cell, which costs a few milliseconds to build where a plotext figure costs tens, and the main
screen redraws it twice a second.

What each cell is. A column is one stretch of steps (the last history rows split into as many
equal groups as there are columns; one step per column while they fit): its colour is the
geometric mean of the layer's positive ‖∇W‖ there, binned on one scale for the whole strip
(whole decades at its ends, at least one decade wide, so a flat series looks flat). A stretch
with any NaN or ±inf is drawn `!` (red), one where the gradient is exactly 0 throughout `·`
(grey: a dead layer); neither is averaged away. Where there is not room for a row per layer,
two layers share a row (upper and lower half of each cell, ▀ coloured in front and behind).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rich.text import Text

from .format import num

# Viridis from its blue end up (its darkest purples vanish on a dark terminal): low to high, light
# enough to see, and with neither red nor grey in it, which mark NaN/Inf and dead layers.
PALETTE = ("#46307e", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
BAD_COLOUR, DEAD_COLOUR = "#ff3030", "#6c6c6c"
BAD_MARK, DEAD_MARK = "!", "·"
BAD, DEAD, MISSING = -1, -2, -3          # cell codes besides the palette's 0..7
TITLE = "gradient flow: log10 ‖∇W‖ per layer, input side at the top"
SHORT_TITLE = "gradient flow: log10 ‖∇W‖"
LABEL_MAX = 12
VALUE_WIDTH = 8


def weight_series(history: dict, layer_params: list) -> list:
    """(label, series name) of each weighted layer's main gradient norm, input side first."""
    out = []
    for layer, param in layer_params:
        name = f"{param}.grad_norm"
        if name in history:
            out.append((layer, name))
    return out


@dataclass(frozen=True)
class Flow:
    """What the view draws: per layer its cells (codes: palette index, BAD, DEAD, MISSING) and
    its latest value; the steps the columns span; the scale in log10 (lo, hi)."""
    labels: tuple
    cells: np.ndarray          # (layers, columns) int codes
    latest: tuple              # per layer: its ‖∇W‖ at the last step (float, NaN when none)
    first_step: int
    last_step: int
    lo: int
    hi: float

    @property
    def per_colour(self) -> float:
        """Decades per colour of the scale."""
        return (self.hi - self.lo) / len(PALETTE)

    def code(self, value: float) -> int:
        """The cell code of one value."""
        if not math.isfinite(value):
            return BAD
        if value == 0:
            return DEAD
        if value < 0:
            return BAD
        return int(min(max(math.floor((math.log10(value) - self.lo) / self.per_colour), 0), len(PALETTE) - 1))


NICE = (0.125, 0.25, 0.5, 1, 2, 3, 4, 5, 10, 20, 50, 100)   # decades a colour


def scale(logs: np.ndarray) -> tuple:
    """(lo, hi): whole decades around the finite log10 values, at least one decade apart, and
    `len(PALETTE)` colours of a round number of decades each (no values: 0, 1)."""
    finite = logs[np.isfinite(logs)]
    if finite.size == 0:
        return 0, 1
    lo, hi = math.floor(float(finite.min())), math.ceil(float(finite.max()))
    hi = max(hi, lo + 1)
    colours = len(PALETTE)
    per = next((p for p in NICE if p * colours >= hi - lo), (hi - lo) / colours)
    slack = per * colours - (hi - lo)
    lo -= math.floor(slack / 2)          # the values in the middle of the scale, its ends whole decades
    return lo, lo + per * colours


def flow(history: dict, layer_params: list, columns: int) -> Flow | None:
    """The cells of the strip, `columns` wide, from the history; None without steps or layers."""
    steps = history.get("step")
    series = weight_series(history, layer_params)
    if steps is None or len(steps) == 0 or not series or columns < 1:
        return None
    values = np.vstack([np.asarray(history[name], dtype=float) for _, name in series])
    n = values.shape[1]
    edges = np.linspace(0, n, min(columns, n) + 1).round().astype(int)
    starts = edges[:-1]
    with np.errstate(all="ignore"):
        bad = ~np.isfinite(values) | (values < 0)
        positive = ~bad & (values > 0)
        logs = np.where(positive, np.log10(np.where(positive, values, 1.0)), 0.0)
        n_bad = np.add.reduceat(bad, starts, axis=1)
        n_pos = np.add.reduceat(positive, starts, axis=1)
        means = np.where(n_pos > 0, np.add.reduceat(logs, starts, axis=1) / np.maximum(n_pos, 1), np.nan)
    latest = values[:, -1]
    with np.errstate(all="ignore"):
        latest_logs = np.where(latest > 0, np.log10(np.where(latest > 0, latest, 1.0)), np.nan)
    lo, hi = scale(np.concatenate([means.ravel(), latest_logs]))
    per = (hi - lo) / len(PALETTE)
    with np.errstate(invalid="ignore"):
        bins = np.clip(np.floor((np.nan_to_num(means, nan=lo) - lo) / per), 0, len(PALETTE) - 1).astype(int)
    cells = np.where(n_bad > 0, BAD, np.where(n_pos > 0, bins, DEAD))
    if cells.shape[1] < columns:   # fewer steps than columns: each step drawn as wide as it fits
        cells = cells[:, np.arange(columns) * cells.shape[1] // columns]
    return Flow(tuple(label for label, _ in series), cells, tuple(float(v) for v in latest),
                int(steps[0]), int(steps[-1]), lo, hi)


# -- drawing ------------------------------------------------------------------------------------

def _colour(code: int) -> str | None:
    if code >= 0:
        return PALETTE[code]
    return {BAD: BAD_COLOUR, DEAD: DEAD_COLOUR}.get(code)


def _cell(code: int) -> tuple:
    """(character, style) of one layer's cell on a row of its own."""
    if code >= 0:
        return "█", PALETTE[code]
    if code == BAD:
        return BAD_MARK, f"bold white on {BAD_COLOUR}"
    if code == DEAD:
        return DEAD_MARK, DEAD_COLOUR
    return " ", ""


def _pair(upper: int, lower: int) -> tuple:
    """(character, style) of a cell shared by two layers: upper half, lower half."""
    top, bottom = _colour(upper), _colour(lower)
    if top and bottom:
        return "▀", f"{top} on {bottom}"
    if top:
        return "▀", top
    if bottom:
        return "▄", bottom
    return " ", ""


def _append_runs(text: Text, cells) -> None:
    """Append (character, style) cells, one span per run of the same style (fewer spans, faster)."""
    run, style = [], None
    for char, s in cells:
        if s != style and run:
            text.append("".join(run), style=style or None)
            run = []
        run.append(char)
        style = s
    if run:
        text.append("".join(run), style=style or None)


def _bar_length(f: Flow, value: float, width: int) -> int:
    if not (math.isfinite(value) and value > 0) or width < 1:
        return 0
    t = (math.log10(value) - f.lo) / (f.hi - f.lo)
    return int(min(max(round(1 + t * (width - 1)), 1), width))


def _fit(label: str, width: int) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1):]


def _hi(f: Flow) -> str:
    return f"1e{f.hi:g}"


def legend(f: Flow, width: int, paired: bool) -> Text:
    """The scale: the colours from 10^lo to 10^hi, what one colour spans, the two marks (the
    decades a colour only where it fits)."""
    text = Text(no_wrap=True, overflow="crop")
    text.append(f"1e{f.lo} ")
    for colour in PALETTE:
        text.append("█", style=colour)
    text.append(f" {_hi(f)}")
    per = f.per_colour
    per_text = f" ({per:g} decade{'s' if per != 1 else ''} a colour)"
    marks = Text()
    if paired:
        marks.append("  ")
        marks.append("█", style=BAD_COLOUR)
        marks.append(" NaN/Inf ")
        marks.append("█", style=DEAD_COLOUR)
        marks.append(" 0 dead")
    else:
        marks.append("  ")
        marks.append(BAD_MARK, style=f"bold white on {BAD_COLOUR}")
        marks.append(" NaN/Inf  ")
        marks.append(DEAD_MARK, style=DEAD_COLOUR)
        marks.append(" 0 dead")
    if len(text) + len(per_text) + len(marks) <= width:
        text.append(per_text, style="dim")
    text.append_text(marks)
    hint = "  (▀ upper, ▄ lower layer)"
    if paired and len(text) + len(hint) <= width:
        text.append(hint, style="dim")
    text.truncate(width)
    return text


def rows_needed(history: dict, layer_params: list) -> int:
    """The lines the view takes with a row per layer: title, axis, one per layer, scale."""
    return len(weight_series(history, layer_params)) + 3


def gradient_flow_text(history: dict, layer_params: list, width: int, height: int) -> Text:
    """The whole view, `width` × at most `height` lines."""
    if width < 20 or height < 1:
        return Text("")
    n = len(weight_series(history, layer_params))
    if n == 0 or not len(history.get("step", ())):
        return Text(f"{SHORT_TITLE}\n(no weighted layer has a gradient yet)", style="dim")
    paired = n + 3 > height and n > 1
    rows = [(i, i + 1 if i + 1 < n else None) for i in range(0, n, 2)] if paired else [(i, None) for i in range(n)]
    labels = [label for label, _ in weight_series(history, layer_params)]
    if paired:
        names = [f"{labels[a]}/{labels[b]}" if b is not None else labels[a] for a, b in rows]
    else:
        names = labels
    label_w = min(max(len(s) for s in names), LABEL_MAX)
    value_w = 0 if paired else VALUE_WIDTH
    rest = width - label_w - 1 - (value_w + 1 if value_w else 0)
    bar_w = int(min(max(rest // 4, 4), 20))
    strip_w = rest - bar_w - 1
    if strip_w < 4:
        bar_w, strip_w = max(rest - 5, 1), 4
    f = flow(history, layer_params, strip_w)
    out = Text(no_wrap=True, overflow="crop")
    out.append(TITLE if len(TITLE) <= width else SHORT_TITLE, style="bold")
    out.append("\n")
    span = f"steps {f.first_step}–{f.last_step}" if f.last_step != f.first_step else f"step {f.first_step}"
    axis = f"{'layer':>{label_w}} " + _fit(span, strip_w).ljust(strip_w) + " " + _fit(f"at step {f.last_step}", bar_w + 1 + value_w)
    out.append(axis[:width], style="dim")
    columns = f.cells.shape[1]
    for (a, b), name in zip(rows, names):
        out.append("\n")
        out.append(f"{_fit(name, label_w):>{label_w}} ")
        if b is None and not paired:
            _append_runs(out, [_cell(int(c)) for c in f.cells[a]])
        else:
            lower = f.cells[b] if b is not None else np.full(columns, MISSING)
            _append_runs(out, [_pair(int(u), int(d)) for u, d in zip(f.cells[a], lower)])
        out.append(" " * (strip_w - columns + 1))
        _bars(out, f, a, b, bar_w, paired)
    out.append("\n")
    out.append_text(legend(f, width, paired))
    return out


def _bars(out: Text, f: Flow, a: int, b: int | None, width: int, paired: bool) -> None:
    """The bar (and number) of layer a at the latest step, or the half-block bars of a and b."""
    if not paired:
        value = f.latest[a]
        code = f.code(value)
        length = _bar_length(f, value, width)
        if code >= 0:
            out.append("█" * length, style=PALETTE[code])
            out.append(" " * (width - length + 1))
            out.append(f"{num(value):>{VALUE_WIDTH}}")
        else:
            char, style = _cell(code)
            out.append(char, style=style)
            out.append(" " * width)
            out.append(f"{num(value) if code != MISSING else '':>{VALUE_WIDTH}}", style=BAD_COLOUR if code == BAD else DEAD_COLOUR)
        return
    upper = (f.code(f.latest[a]), _bar_length(f, f.latest[a], width))
    lower = (f.code(f.latest[b]), _bar_length(f, f.latest[b], width)) if b is not None else (MISSING, 0)
    cells = []
    for j in range(width):
        top = upper[0] if (j < upper[1] or (j == 0 and upper[0] in (BAD, DEAD))) else MISSING
        bottom = lower[0] if (j < lower[1] or (j == 0 and lower[0] in (BAD, DEAD))) else MISSING
        cells.append(_pair(top, bottom))
    _append_runs(out, cells)
