"""Plots with plotext: gradient flow (log10 ‖∇W‖ per layer over steps) and the loss.

A plotext render costs tens of milliseconds, so the app redraws these a few times a second at
most, only when their data changed, with the points thinned to about the plot's width. While
training runs, the main screen's plots are also built off the event loop (`BackgroundPlot`), so
that a key pressed during a redraw is handled at once instead of after it.
"""
from __future__ import annotations

import numpy as np
from rich.text import Text
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot


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


class BackgroundPlot(PlotextPlot):
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
        draw(plt)
        plt.plotsize(*size)
        plt._set_size(*size)
        plt.theme(theme)
        text = Text.from_ansi(plt.build())
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
                    lines.append((x.tolist(), y.tolist(), label))
        self.show_figure(lambda plt: _lines(plt, "gradient flow: log10 ‖∇W‖ per layer", lines))


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
                ok = np.isfinite(values)
                if ok.any():
                    x, y = thin(steps[ok], values[ok], width)
                    lines.append((x.tolist(), y.tolist(), label))
        self.show_figure(lambda plt: _lines(plt, "loss", lines))


def _lines(plt, title: str, lines: list) -> None:
    plt.title(title)
    if not lines:
        return
    for x, y, label in lines:
        plt.plot(x, y, label=label, marker="braille")
    plt.xlabel("step")
