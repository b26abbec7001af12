"""LossPlot: the training and validation loss over the steps (the main screen)."""
from __future__ import annotations

import numpy as np

from .background_plot import BackgroundPlot, draw_lines
from .common import fitted_lines, thin


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
        self.show_figure(lambda plt: draw_lines(plt, "loss", lines, ticks))
