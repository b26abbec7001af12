"""ElboPlot: the ELBO's two terms over the steps, each on its own scale (the Bayesian view)."""
from __future__ import annotations

import numpy as np

from .two_axis_plot import TwoAxisPlot


class ElboPlot(TwoAxisPlot):
    """The ELBO's two terms over the steps, each on its own scale: E_q[log p] rises as the fit
    improves, the KL shows what moving q away from the prior costs."""

    def show(self, history: dict) -> bool:
        ell, kl = history.get("expected_log_likelihood"), history.get("kl")
        if ell is None or kl is None:
            return self.draw(history, (), (np.array([]), "cyan"))
        return self.draw(history, ("ELBO terms: E_q[log p] (cyan, left axis) · KL (red, right axis)",
                                   "E_q[log p] cyan, left axis · KL red, right axis",
                                   "E_q[log p] cyan, left · KL red, right"),
                         (ell, "cyan"), (kl, "red"))
