"""The data view's pictures as Rich text, sized to the space they get.

classes   each character is two cells of the model's grid (the half block ▀: its colour the upper
          cell, its background the lower): the predicted class's colour, brighter where the
          model is surer, so the decision boundary is where the colour changes. The training
          points lie on it in their own class's full colour: ● where the model puts them on the
          right side, ✕ where on the wrong one.
surface   the same grid coloured by the model's output (blue low, orange high), the points by
          their targets on the same scale.
curve     the fitted curve (braille dots) over the training points (●), with the y axis's range.
"""
from __future__ import annotations

import math

import numpy as np
from rich.style import Style
from rich.text import Text

from .format import num, pct, view_title

CLASS_COLOURS = ((59, 130, 246), (245, 158, 11), (16, 185, 129), (217, 70, 239), (239, 68, 68),
                 (6, 182, 212), (234, 179, 8), (139, 92, 246), (244, 114, 182), (163, 163, 163))
DARK = (24, 24, 28)          # the surface's ground, where the model is not sure at all
LOW, HIGH = CLASS_COLOURS[0], CLASS_COLOURS[1]
CURVE_COLOUR, POINT_COLOUR = "cyan", "rgb(245,158,11)"
GUTTER = 9                   # the curve's y labels


def _blend(a, b, t: float) -> tuple:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _rgb(c) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"


def _resample(cells: np.ndarray, rows: int, columns: int, height: int, width: int) -> np.ndarray:
    """The grid's cells (rows × columns, row 0 the top) at `height` × `width` by nearest cell."""
    r = np.minimum((np.arange(height) + 0.5) * rows / height, rows - 1).astype(int)
    c = np.minimum((np.arange(width) + 0.5) * columns / width, columns - 1).astype(int)
    return cells.reshape(rows, columns, *cells.shape[1:])[np.ix_(r, c)]


def _place(points: np.ndarray, x_range, y_range, width: int, height: int) -> tuple:
    """(column, pixel row from the top) of each point on a width × height pixel picture."""
    (x0, x1), (y0, y1) = x_range, y_range
    col = np.clip(((points[:, 0] - x0) / (x1 - x0) * width).astype(int), 0, width - 1)
    row = np.clip(((y1 - points[:, 1]) / (y1 - y0) * height).astype(int), 0, height - 1)
    return col, row


def class_colours(view) -> list:
    """Each cell's colour (rows × columns of RGB tuples) for a 'classes' view."""
    k = max(view.classes, 2)
    predicted = np.asarray(view.predicted, dtype=int)
    sure = (np.asarray(view.confidence, dtype=float) - 1 / k) / (1 - 1 / k)   # 0: a guess, 1: certain
    palette = np.array([CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(k)], dtype=float)
    t = (0.15 + 0.4 * np.round(np.clip(sure, 0, 1) * 16) / 16)[:, None]   # (16 shades: few styles to build)
    return np.asarray(np.rint(np.array(DARK) + (palette[predicted] - np.array(DARK)) * t), dtype=int)


def _value_colour(t: np.ndarray) -> np.ndarray:
    """Blue (0) through the dark ground (0.5) to orange (1), for a surface's values."""
    t = (np.round(np.clip(t, 0, 1) * 32) / 32)[:, None]   # (32 shades: few styles to build)
    low, dark, high = np.array(LOW, float), np.array(DARK, float), np.array(HIGH, float)
    below = dark + (low - dark) * (1 - 2 * t)
    above = dark + (high - dark) * (2 * t - 1)
    return np.where(t < 0.5, below, above)


def _value_range(view) -> tuple:
    values = np.asarray(view.values + view.targets, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    return (lo, hi) if hi > lo else (lo - 1.0, hi + 1.0)


def plane_size(view, width: int, height: int) -> tuple:
    """The largest (width, height) in characters within these that keeps the grid's proportions
    (its cells are square, and a half block is about square)."""
    width, height = max(width, 4), max(height, 2)
    ratio = view.columns / view.rows
    if width > 2 * height * ratio:
        return max(4, round(2 * height * ratio)), height
    return width, max(2, round(width / ratio / 2))


def plane_picture(view, width: int, height: int) -> Text:
    """A 'classes' or 'surface' view in at most `height` lines of `width` characters, in the
    inputs' proportions (a half block is about square, so a circle of points stays round)."""
    width, height = plane_size(view, width, height)
    lo, hi = _value_range(view) if view.kind == "surface" else (0.0, 1.0)
    if view.kind == "classes":
        colours = class_colours(view)
    else:
        colours = np.rint(_value_colour((np.asarray(view.values, float) - lo) / (hi - lo))).astype(int)
        colours[~np.isfinite(np.asarray(view.values, float))] = (90, 90, 90)
    pixels = _resample(colours.reshape(view.rows * view.columns, 3), view.rows, view.columns, 2 * height, width)
    marks: dict = {}
    if view.points:
        points = np.asarray(view.points, dtype=float)
        col, row = _place(points, view.x_range, view.y_range, width, 2 * height)
        for i, (c, r) in enumerate(zip(col.tolist(), (row // 2).tolist())):
            marks[(r, c)] = _mark(view, i, marks.get((r, c)), lo, hi)
    text = Text(no_wrap=True, overflow="crop")
    styles: dict = {}

    def style_of(fg, bg, bold=False):
        key = (fg, bg, bold)
        style = styles.get(key)
        if style is None:
            style = styles[key] = Style(color=_rgb(fg), bgcolor=_rgb(bg), bold=bold)
        return style

    for r in range(height):
        top, bottom = pixels[2 * r].tolist(), pixels[2 * r + 1].tolist()
        run, run_key = 0, None   # cells alike in a row are appended together (a surface is smooth)
        for c in range(width):
            mark = marks.get((r, c))
            key = None if mark is not None else (tuple(top[c]), tuple(bottom[c]))
            if key != run_key or key is None:
                if run:
                    text.append("▀" * run, style_of(*run_key))
                run, run_key = 0, key
            if mark is None:
                run += 1
            else:
                glyph, colour = mark
                text.append(glyph, style_of(colour, _blend(tuple(top[c]), tuple(bottom[c]), 0.5), True))
        if run:
            text.append("▀" * run, style_of(*run_key))
        if r < height - 1:
            text.append("\n")
    return text


def _mark(view, i: int, already, lo: float, hi: float):
    """(glyph, colour) of training point i; a point on the wrong side wins its character."""
    if view.kind == "classes":
        label = view.labels[i]
        colour = CLASS_COLOURS[label % len(CLASS_COLOURS)]
        wrong = _predicted_at(view, view.points[i]) != label
        if already is not None and already[0] == "✕" and not wrong:
            return already
        return ("✕" if wrong else "●"), colour
    t = np.array([(view.targets[i] - lo) / (hi - lo)])
    colour = tuple(int(v) for v in np.rint(_value_colour(t))[0])
    return "●", _blend(colour, (255, 255, 255), 0.25)


def _predicted_at(view, point) -> int:
    """The class of the grid cell that holds `point`."""
    (x0, x1), (y0, y1) = view.x_range, view.y_range
    c = min(max(int((point[0] - x0) / (x1 - x0) * view.columns), 0), view.columns - 1)
    r = min(max(int((y1 - point[1]) / (y1 - y0) * view.rows), 0), view.rows - 1)
    return view.predicted[r * view.columns + c]


_BRAILLE = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))   # dot bits by (row, column) in a cell


def curve_picture(view, width: int, height: int) -> Text:
    """A 'curve' view: y labels in a gutter, the fitted curve in braille, the points as ●."""
    width, height = max(width - GUTTER, 8), max(height - 1, 3)   # (the last line: the x axis's labels)
    (x0, x1), (y0, y1) = view.x_range, view.y_range
    dots_w, dots_h = 2 * width, 4 * height
    curve = np.asarray(view.values, dtype=float)
    xs = np.linspace(x0, x1, len(curve))
    at = np.interp(x0 + (np.arange(dots_w) + 0.5) * (x1 - x0) / dots_w, xs, curve)
    rows = np.clip(((y1 - at) / (y1 - y0) * dots_h), -1, dots_h).astype(int)
    cells = np.zeros((height, width), dtype=int)
    previous = None
    for x, y in enumerate(rows.tolist()):
        if not math.isfinite(at[x]):
            previous = None
            continue
        span = range(min(y, previous), max(y, previous) + 1) if previous is not None else (y,)
        for yy in span:   # joined to the column before, so a steep curve stays one line
            if 0 <= yy < dots_h:
                cells[yy // 4, x // 2] |= _BRAILLE[yy % 4][x % 2]
        previous = y
    marks = set()
    if view.points:
        col, row = _place(np.asarray(view.points, dtype=float), view.x_range, view.y_range, width, height)
        marks = set(zip(row.tolist(), col.tolist()))
    labels = {0: num(y1), height // 2: num((y0 + y1) / 2), height - 1: num(y0)}
    text = Text(no_wrap=True, overflow="crop")
    for r in range(height):
        text.append(f"{labels.get(r, ''):>{GUTTER - 2}} ┤", style="dim")
        for c in range(width):
            if (r, c) in marks:
                text.append("●", POINT_COLOUR)
            elif cells[r, c]:
                text.append(chr(0x2800 + int(cells[r, c])), CURVE_COLOUR)
            else:
                text.append(" ")
        text.append("\n")
    axis = f"{num(x0)}".ljust(width // 2) + f"{num(x1)}".rjust(width - width // 2)
    text.append(" " * GUTTER + axis, style="dim")
    return text


def picture(view, width: int, height: int) -> Text:
    if view is None:
        return Text("no data view yet: it is measured at step 0 and as the run trains", style="dim")
    if view.kind in ("classes", "surface"):
        return plane_picture(view, width, height)
    if view.kind == "curve":
        return curve_picture(view, width, height)
    return Text(f"No picture for this model: {view.note}.", style="yellow")


def legend(view) -> Text:
    """What the colours and marks mean, the ranges shown, and how the output was read: one item
    a line (it sits beside the picture, or below it)."""
    text = Text()
    if view is None or view.kind == "none":
        return text
    (x0, x1), (y0, y1) = view.x_range, view.y_range
    if view.kind == "classes":
        for i, name in enumerate(view.class_names):
            text.append("■", _rgb(CLASS_COLOURS[i % len(CLASS_COLOURS)]))
            text.append(f" class {name}\n")
        text.append("● a training point, in its class's colour\n✕ one the model puts on the wrong side\n"
                    "the brighter the ground, the surer the model\n")
    elif view.kind == "surface":
        lo, hi = _value_range(view)
        text.append("■", _rgb(LOW))
        text.append(f" {num(lo)} (low)\n")
        text.append("■", _rgb(HIGH))
        text.append(f" {num(hi)} (high)\n")
        text.append("the ground: the model's output there\n● a training point, coloured by its target\n")
    else:
        text.append("⠉⠒", CURVE_COLOUR)
        text.append(" the model's fitted curve\n")
        text.append("●", POINT_COLOUR)
        text.append(" a training point (input, target)\n")
    if view.kind == "curve":
        text.append(f"\ninput {num(x0)} to {num(x1)} (across)\ntarget {num(y0)} to {num(y1)} (up)\n", style="dim")
    else:
        text.append(f"\nx₁ {num(x0)} to {num(x1)} (across)\nx₂ {num(y0)} to {num(y1)} (up)\n", style="dim")
    text.append("\n" + view.note, style="dim")
    return text


def summary(view) -> str:
    """One line: how well the model does on the points shown."""
    if view is None or view.kind == "none":
        return ""
    n = len(view.points)
    if view.kind == "classes":
        return f"accuracy {pct(view.accuracy)} on the {n} training points shown"
    return f"mean squared error {num(view.fit)} on the {n} training points shown"


def data_title(state) -> Text:
    """The data view's head line: the model, the step, how it does on the points shown."""
    snap, view = state.snapshot, state.data_view
    text = view_title("Data", (state.model or {}).get("name", ""), state)
    if view is not None and view.kind != "none":
        text.append(f"\n{summary(view)}")
        if snap is not None and view.step != snap.step:
            text.append(f" (drawn at step {view.step}: redrawn every few steps, and whenever the run stops)",
                        style="dim")
    return text
