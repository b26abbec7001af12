"""Plots with plotext: gradient flow (log10 ‖∇W‖ per layer over steps) and the loss.

A plotext render costs tens of milliseconds, so the app redraws these a few times a second at
most, only when their data changed, with the points thinned to about the plot's width. While
training runs, the main screen's plots are also built off the event loop (`BackgroundPlot`), so
that a key pressed during a redraw is handled at once instead of after it.
"""
from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from ..format import num

# plotext turns values into screen positions with plain float arithmetic: values past about
# ±1e306, or a spread below about 1e-307, overflow inside it and building the figure raises. Values
# outside these bounds are plotted divided by a power of two (exact), their ticks labelled with
# the real values (`fit_exponent`).
PLOT_LARGE, PLOT_SMALL = 1e300, 1e-290
# What building a figure can raise on numbers it cannot place (the last guard, see GuardedPlot).
NUMERIC_ERRORS = (ValueError, OverflowError, ZeroDivisionError, FloatingPointError)
# A point far outside a plot's fixed y range costs plotext time and memory in proportion to how far
# (a line to 1e5 times the height outside never finishes): such points are drawn clipped to this
# many heights beyond the range, which still shows the line leaving the frame.
OFF_SCALE = 4


def fit_exponent(*arrays) -> int:
    """0 when plotext can draw these (finite) values as they are; else the power of two e such
    that values·2⁻ᵉ lie within ±1: for values past ±1e300, and for tiny ones (below 1e-290, or
    differing by less than that) that plotext could not tell apart."""
    lo, hi = math.inf, -math.inf
    for y in arrays:
        y = np.asarray(y, dtype=float)
        if y.size:
            lo, hi = min(lo, float(np.min(y))), max(hi, float(np.max(y)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0
    largest = max(-lo, hi)
    spread = hi - lo   # inf at worst (Python floats)
    if largest <= PLOT_LARGE and not 0 < largest < PLOT_SMALL and not 0 < spread < PLOT_SMALL:
        return 0
    return math.frexp(largest)[1]


def scaled(y, exponent: int) -> np.ndarray:
    """y·2⁻ᵉ (y itself for e = 0)."""
    y = np.asarray(y, dtype=float)
    return np.ldexp(y, -exponent) if exponent else y


def real_value(t: float, exponent: int) -> float:
    """What a position on a plot scaled by 2⁻ᵉ stands for."""
    return float(np.ldexp(float(t), exponent)) if exponent else float(t)


def scaled_ticks(lines: list, exponent: int, count: int = 4) -> tuple | None:
    """(positions, labels) in the real values for a plot drawn scaled by 2⁻ᵉ, None when unscaled
    (plotext's own ticks are right then)."""
    if not exponent or not lines:
        return None
    lo = min(min(y) for _, y, _ in lines)
    hi = max(max(y) for _, y, _ in lines)
    positions = [lo] if not hi > lo else list(np.linspace(lo, hi, count))
    return positions, [num(real_value(t, exponent)) for t in positions]


def fitted_lines(lines: list) -> tuple:
    """(lines, ticks): (x, y, label) lines of finite values sharing one y axis, as plotext can
    draw them (see `fit_exponent`), with real-valued ticks when they had to be scaled."""
    exponent = fit_exponent(*(y for _, y, _ in lines))
    lines = [(list(x), scaled(y, exponent).tolist(), label) for x, y, label in lines]
    return lines, scaled_ticks(lines, exponent)


def thin(x: np.ndarray, y: np.ndarray, points: int):
    """At most `points` evenly spaced samples (plotting more than the width buys nothing)."""
    if len(x) <= points:
        return x, y
    keep = np.linspace(0, len(x) - 1, points).round().astype(int)
    return x[keep], y[keep]


def weight_series(history: dict, layer_params: list) -> list:
    """(label, series name) of each weighted layer's main gradient norm, input side first."""
    out = []
    for layer, param in layer_params:
        name = f"{param}.grad_norm"
        if name in history:
            out.append((layer, name))
    return out


class GuardedPlot(PlotextPlot):
    """A plotext plot that shows a one-line note instead of raising if plotext cannot place the
    numbers it was given. The plots here give it only numbers it can (see `fit_exponent`); this is
    the last guard, so that a number nobody foresaw costs one plot, not the interface."""

    def render(self):
        try:
            return super().render()
        except NUMERIC_ERRORS as error:
            return cannot_draw(error)


def cannot_draw(error: BaseException) -> Text:
    return Text(f"(cannot draw this plot: {type(error).__name__}: {error})", style="dim")


class BackgroundPlot(GuardedPlot):
    """A plotext plot described by a function `draw(plt)`, whose text can be built in a thread.

    With `background` off (the default) `show_figure` draws on the widget's own figure and
    refreshes, exactly as PlotextPlot does. With it on, the figure is built on a fresh plotext
    figure in a worker thread and swapped in when done: the event loop only thins the data and
    paints the finished text. A newer figure asked for while one is building waits for it (the
    latest wins). A paint the thread has not prepared (the first one, or after a resize) builds
    on the event loop as before.
    """

    background = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._built: tuple | None = None        # (Text, (width, height), draw)
        self._draw = None
        self._building = False
        self._waiting = False

    def show_figure(self, draw) -> None:
        self._draw = draw
        if not self.background:
            self._draw_on(self.plt, draw)
            self._built = None
            self.refresh()
        elif self._building:
            self._waiting = True
        else:
            self._start_build()

    @staticmethod
    def _draw_on(plt, draw) -> None:
        plt.clear_data()
        plt.clear_figure()
        draw(plt)

    def _start_build(self) -> None:
        self._building, self._waiting = True, False
        size = (self.size.width, self.size.height)
        theme = self._get_plotext_theme_name(self.app.theme)
        draw = self._draw
        self.run_worker(lambda: self._build(draw, size, theme), thread=True, exit_on_error=False,
                        group=f"plot-{id(self)}")

    def _build(self, draw, size, theme) -> None:
        """In a worker thread: a fresh figure, so nothing the event loop touches is shared."""
        plt = Plot()
        try:
            draw(plt)
            plt.plotsize(*size)
            plt._set_size(*size)
            plt.theme(theme)
            text = Text.from_ansi(plt.build())
        except NUMERIC_ERRORS as error:   # shown in its place; the next figure builds as usual
            text = cannot_draw(error)
        try:
            self.app.call_from_thread(self._take, text, size, draw)
        except RuntimeError:  # the app closed meanwhile
            pass

    def _take(self, text: Text, size: tuple, draw) -> None:
        self._building = False
        self._built = (text, size, draw)
        self._draw_on(self.plt, draw)   # the widget's own figure stays in step, for a resize
        self.refresh()
        if self._waiting:
            self._start_build()

    def render(self):
        built = self._built
        if built is not None and built[1] == (self.size.width, self.size.height) and built[2] is self._draw:
            return built[0]
        return super().render()


class GradientFlowPlot(BackgroundPlot):
    """log10 of each layer's ‖∇W‖ over steps: vanishing shows as the lines falling apart."""

    def show(self, history: dict, layer_params: list) -> None:
        lines = []
        steps = history.get("step")
        if steps is not None and len(steps):
            width = max(self.size.width - 10, 10)
            for label, name in weight_series(history, layer_params):
                with np.errstate(all="ignore"):
                    y = np.log10(history[name])
                ok = np.isfinite(y)
                if ok.any():
                    x, y = thin(steps[ok], y[ok], width)
                    lines.append((x.tolist(), y, label))
        lines, ticks = fitted_lines(lines)
        self.show_figure(lambda plt: _lines(plt, "gradient flow: log10 ‖∇W‖ per layer", lines, ticks))


class LossPlot(BackgroundPlot):
    """The training loss (and the validation loss when the model file gives val_data)."""

    def show(self, history: dict) -> None:
        lines = []
        steps = history.get("step")
        if steps is not None and len(steps):
            width = max(self.size.width - 10, 10)
            for name, label in (("loss", "train"), ("val_loss", "validation")):
                values = history.get(name)
                if values is None:
                    continue
                values = np.asarray(values, dtype=float)
                ok = np.isfinite(values)
                if ok.any():
                    x, y = thin(steps[ok], values[ok], width)
                    lines.append((x.tolist(), y, label))
        lines, ticks = fitted_lines(lines)   # a loss of 1e308 is drawn scaled, its ticks real
        self.show_figure(lambda plt: _lines(plt, "loss", lines, ticks))


def _lines(plt, title: str, lines: list, ticks: tuple | None = None) -> None:
    plt.title(title)
    if not lines:
        return
    for x, y, label in lines:
        plt.plot(x, y, label=label, marker="braille")
    if ticks is not None:
        plt.yticks(*ticks)
    plt.xlabel("step")
