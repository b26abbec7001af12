"""Plots with plotext: gradient flow (log10 ‖∇W‖ per layer over steps) and the loss.

A plotext render costs tens of milliseconds, so the app redraws these a few times a second at
most, only when their data changed, with the points thinned to about the plot's width.
"""
from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot


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


class GradientFlowPlot(PlotextPlot):
    """log10 of each layer's ‖∇W‖ over steps: vanishing shows as the lines falling apart."""

    def show(self, history: dict, layer_params: list) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("gradient flow: log10 ‖∇W‖ per layer")
        steps = history.get("step")
        if steps is None or len(steps) == 0:
            self.refresh()
            return
        width = max(self.size.width - 10, 10)
        for label, name in weight_series(history, layer_params):
            with np.errstate(all="ignore"):
                y = np.log10(history[name])
            ok = np.isfinite(y)
            if not ok.any():
                continue
            x, y = thin(steps[ok], y[ok], width)
            plt.plot(x.tolist(), y.tolist(), label=label, marker="braille")
        plt.xlabel("step")
        self.refresh()


class LossPlot(PlotextPlot):
    """The training loss (and the validation loss when the model file gives val_data)."""

    def show(self, history: dict) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        steps = history.get("step")
        if steps is None or len(steps) == 0:
            self.refresh()
            return
        width = max(self.size.width - 10, 10)
        for name, label in (("loss", "train"), ("val_loss", "validation")):
            values = history.get(name)
            if values is None:
                continue
            ok = np.isfinite(values)
            if ok.any():
                x, y = thin(steps[ok], values[ok], width)
                plt.plot(x.tolist(), y.tolist(), label=label, marker="braille")
        plt.xlabel("step")
        self.refresh()
