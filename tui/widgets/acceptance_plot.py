"""AcceptancePlot: HMC's acceptance rate and potential over the steps (the Bayesian view)."""
from __future__ import annotations

import numpy as np

from .two_axis_plot import TwoAxisPlot


class AcceptancePlot(TwoAxisPlot):
    """HMC: the acceptance rate so far (0 to 1) and the potential U = −log p(θ|D) of the chain's
    state, which wanders around its typical value rather than falling to a minimum."""

    def show(self, history: dict) -> bool:
        rate = history.get("hmc.acceptance_rate")
        if rate is None:
            return self.draw(history, (), (np.array([]), "cyan"))
        potential = history.get("hmc.potential")
        return self.draw(history, ("acceptance rate (cyan, left axis, 0–1) · U = −log p(θ|D) (red, right axis)",
                                   "acceptance rate cyan, left · U = −log p(θ|D) red, right",
                                   "acceptance cyan, left · U red, right"),
                         (rate, "cyan"), (potential, "red") if potential is not None else None,
                         left_limits=(0.0, 1.0))
