"""NewtonPlot: Newton's method's ‖g‖ over the steps, on a log scale (the curvature view)."""
from __future__ import annotations

import numpy as np

from .common import LogSeriesPlot


class NewtonPlot(LogSeriesPlot):
    """Newton's ‖g‖ over the steps on a log scale: quadratic convergence shows as the line
    plunging, the number of correct digits doubling each step."""

    def show(self, history: dict) -> bool:
        return self.draw(history, "Newton: ‖g‖ per step, log scale",
                         [(history.get("newton.grad_norm", np.array([])), "cyan")])
