"""LossPlot: the training and validation loss over the steps (the main screen).

Its y axis is labelled short (0.25, 3.2k, 7.5e24), so a diverging run's labels do not squeeze
the plot, and it is on a log scale when the loss spans LOG_FROM or more (a loss falling by
decades, or diverging), or when asked (key l cycles auto, log, linear). The validation loss is
measured every few steps: each measurement is held until the next (common.held), not joined to
it by a slope no measurement shows.
"""
from __future__ import annotations

import math

import numpy as np

from .background_plot import BackgroundPlot, draw_lines
from .common import fit_exponent, held, log10_positive, log_ticks, real_value, scaled, thin

LOG_FROM = 100.0      # max/min of the loss at which the automatic scale is log
SCALES = ("auto", "log", "linear")


def short(x: float) -> str:
    """An axis label: 3 significant digits at most, thousands as k, the rest as 7.5e24."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    a = abs(x)
    if 1e-2 <= a < 1e3:
        return f"{x:.3g}"
    if 1e3 <= a < 1e6:
        return f"{x / 1e3:.3g}k"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def log_wanted(lines: list, scale: str) -> bool:
    """Whether to draw on a log scale: asked for, or (auto) positive losses spanning LOG_FROM."""
    if scale != "auto":
        return scale == "log"
    ys = [np.asarray(y, dtype=float) for _, y, _ in lines if len(y)]
    if not ys:
        return False
    y = np.concatenate(ys)
    return bool(y.min() > 0 and y.max() / LOG_FROM >= y.min())   # (no overflow at 1e308)


class LossPlot(BackgroundPlot):
    """The training loss (and the validation loss when the model file gives val_data)."""

    scale = "auto"
    _history = None

    def on_resize(self) -> None:
        """The ticks and the points drawn depend on the size: drawn again for the new one."""
        if self._history is not None:
            self.show(self._history)

    def show(self, history: dict) -> None:
        self._history = history
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
                if not ok.any():
                    continue
                if name == "val_loss":   # measured every few steps: held until the next one
                    x, y = held(steps, values, width, until=steps[-1])
                else:
                    x, y = thin(steps[ok], values[ok], width)
                lines.append((x.tolist(), y, label))
        if log_wanted(lines, self.scale):
            lines = [(x, log10_positive(np.asarray(y)), label) for x, y, label in lines]
            lines = [(list(np.asarray(x)[np.isfinite(y)]), y[np.isfinite(y)].tolist(), label)
                     for x, y, label in lines if np.isfinite(y).any()]
            ticks = log_ticks(min(min(y) for _, y, _ in lines), max(max(y) for _, y, _ in lines)) if lines else None
            title = "loss (log scale)"
        else:
            # a loss of 1e308 is drawn scaled (see fit_exponent), its ticks real
            exponent = fit_exponent(*(y for _, y, _ in lines))
            lines = [(list(x), scaled(y, exponent).tolist(), label) for x, y, label in lines]
            ticks = None
            if lines:
                lo, hi = min(min(y) for _, y, _ in lines), max(max(y) for _, y, _ in lines)
                # no more ticks than rows to hold them apart: two on one row leave plotext's choice
                # of label to chance
                count = int(min(4, max(2, (self.size.height - 5) // 2 + 1)))
                positions = [lo] if not hi > lo else list(np.linspace(lo, hi, count))
                ticks = positions, [short(real_value(t, exponent)) for t in positions]
            title = "loss"
        self.show_figure(lambda plt: draw_lines(plt, title, lines, ticks))
