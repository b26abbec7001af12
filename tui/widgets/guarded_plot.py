"""GuardedPlot: a plotext plot that shows a note instead of raising on numbers it cannot place."""
from __future__ import annotations

from rich.text import Text
from textual_plotext import PlotextPlot

# What building a figure can raise on numbers it cannot place (the last guard, see GuardedPlot).
NUMERIC_ERRORS = (ValueError, OverflowError, ZeroDivisionError, FloatingPointError)


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

