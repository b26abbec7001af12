"""EdgePlot: the lr against the stability edge over the steps, on a log scale (the curvature view).

Curvature is measured only every few steps, so its series are NaN in between; the plot holds
each measurement until the next one (the edge in force is the last one measured; common.held).
"""
from __future__ import annotations

import numpy as np

from .common import LogSeriesPlot


class EdgePlot(LogSeriesPlot):
    """lr against the stability edge on a log scale: the lr line crossing above the edge is where
    gradient descent turns unstable. Without an edge (Adam, Newton): λ_max, once measured twice."""

    def show(self, history: dict, edge_formula: str | None = None) -> bool:
        edge = history.get("curvature.lr_edge")
        if edge is not None and np.isfinite(edge).any():
            name = f"edge {edge_formula}" if edge_formula and len(edge_formula) < 12 else "edge"
            return self.draw(history, f"lr (cyan) vs the lr {name} (red), log scale",
                             [(history.get("lr", np.array([])), "cyan"), (edge, "red")])
        lam = history.get("curvature.lambda_max")
        if lam is not None and np.isfinite(lam).sum() >= 2:
            return self.draw(history, "λ_max, the Hessian's largest eigenvalue, log scale",
                             [(lam, "magenta")])
        return self.draw(history, "", [])
