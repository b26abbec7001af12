"""SigmaPlot: the posterior σ of each layer over the steps, on a log scale (the Bayesian view)."""
from __future__ import annotations

import numpy as np

from .common import FittedTitle, LogSeriesPlot

LAYER_COLOURS = ("cyan", "orange", "green", "magenta", "blue", "red")   # plotext names (its "yellow" is blue)


def sigma_series(history: dict, layers: list) -> list:
    """(layer, colour, σ values) for the layers with a σ series (measured every few steps: the
    plot holds each measurement until the next, see common.held)."""
    out = []
    for layer in layers:
        values = history.get(f"{layer}.posterior_sigma")
        if values is not None and np.isfinite(values).any():
            out.append((layer, LAYER_COLOURS[len(out) % len(LAYER_COLOURS)], values))
        if len(out) == len(LAYER_COLOURS):
            break
    return out


class SigmaPlot(FittedTitle, LogSeriesPlot):
    """The posterior σ of each layer over the steps on a log scale (from the chain, for HMC)."""

    def show(self, history: dict, layers: list, sampler: bool = False) -> bool:
        series = sigma_series(history, layers)
        measured = sum(int(np.isfinite(history.get(f"{layer}.posterior_sigma")).sum()) for layer, _, _ in series)
        if not series or measured < 2 * len(series):
            self.titles = ()
            return self.draw(history, "", [])
        names = " · ".join(f"{layer} {colour}" for layer, colour, _ in series)
        what = "the chain's σ" if sampler else "posterior σ"
        self.titles = (f"{what} per layer, log scale: {names}", f"σ per layer, log: {names}")
        return self.draw(history, self.titles[0], [(values, colour) for _, colour, values in series])
