"""GradientFlowPlot: log10 ‖∇W‖ per layer over the steps (the main screen)."""
from __future__ import annotations

import numpy as np

from .background_plot import BackgroundPlot, draw_lines
from .common import fitted_lines, thin


def weight_series(history: dict, layer_params: list) -> list:
    """(label, series name) of each weighted layer's main gradient norm, input side first."""
    out = []
    for layer, param in layer_params:
        name = f"{param}.grad_norm"
        if name in history:
            out.append((layer, name))
    return out


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
        self.show_figure(lambda plt: draw_lines(plt, "gradient flow: log10 ‖∇W‖ per layer", lines, ticks))
