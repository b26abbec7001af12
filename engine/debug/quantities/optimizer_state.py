"""What the optimiser reports about its last step: Newton's decrement and damping, HMC's
acceptance rate and energy error (in the history as 'newton.<key>' and 'hmc.<key>')."""
from __future__ import annotations

from .base import Quantity

KEYS = ("grad_norm", "newton_decrement", "damping_used", "min_eigenvalue", "acceptance_rate", "potential",
        "hamiltonian_error")


class OptimizerState(Quantity):
    name = "optimiser state"
    series = tuple(f"{family}.{key}" for family in ("newton", "hmc") for key in KEYS)

    def start(self, session) -> None:
        self._family = "hmc" if session.backend.sampler else "newton"
        self.latest = None

    def measure(self, ctx) -> None:
        state = self.latest = ctx.backend.optimizer_state()
        if state:
            series, family = ctx.series, self._family
            for key in KEYS:
                if key in state:
                    series[f"{family}.{key}"] = state[key]
