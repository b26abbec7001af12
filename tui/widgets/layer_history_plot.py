"""LayerHistoryPlot: some of one layer's series over the steps, log10 (the layer inspector)."""
from __future__ import annotations

import math

import numpy as np
from textual_plotext import PlotextPlot

from .common import held, log10_positive


class LayerHistoryPlot(PlotextPlot):
    """log10 of some of the layer's series over the steps: the update/weight ratio of each
    parameter (with the healthy 1e-3 line), or for a layer without parameters the gradient that
    reaches it from the loss side. The update ratios are measured every few steps: each
    measurement is held until the next (common.held), never joined to it by a slope."""

    DEFAULT_CSS = """
    LayerHistoryPlot { height: 12; width: 1fr; }
    """

    def show(self, history: dict, title: str, series: list, reference: float | None = None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        steps = history.get("step")
        drawn = False
        if steps is not None and len(steps):
            width = max(self.size.width - 10, 10)
            for label, name in series:
                values = history.get(name)
                if values is None:
                    continue
                x, y = held(steps, log10_positive(np.asarray(values, dtype=float)), width, until=steps[-1])
                if not len(x):
                    continue
                plt.plot(x.tolist(), y.tolist(), label=label, marker="braille")
                drawn = True
            if drawn and reference is not None:
                plt.hline(math.log10(reference), "green")
        plt.xlabel("step")
        self.refresh()
