"""Histograms of every weight and gradient ('<param>.weight_hist', '<param>.grad_hist') and of
each activation's local derivative ('<layer>.deriv_hist'). They cost more than the rest: every
`histogram_every` steps, on a step-into, and whenever the run stands still (they go into that
step's snapshot, not the history)."""
from __future__ import annotations

from .. import probes
from ..schedule import Schedule
from .base import Quantity


class Histograms(Quantity):
    name = "histograms"
    reads_layers = True

    def start(self, session) -> None:
        self.bins = session.config.histogram_bins
        self.schedule = Schedule(session.config.histogram_every, at_rest=True)
        self._backend = session.backend
        self._activations = [(layer.name, layer.activation, layer.module) for layer in session.backend.layers()
                             if layer.activation is not None]

    def take(self, ctx=None, resting: bool = True) -> dict | None:
        """This step's histograms if they are due (`ctx` None: the weights and gradients now)."""
        if ctx is not None and not (ctx.traced or self.schedule.due(ctx.step, ctx.clock, resting=resting)):
            return None
        bins, backend = self.bins, self._backend
        out = {}
        grads = backend.grads()
        for name, data in backend.weights().items():
            out[f"{name}.weight_hist"] = probes.histogram(data, bins)
            if grads[name] is not None:
                out[f"{name}.grad_hist"] = probes.histogram(grads[name], bins)
        if ctx is not None:
            captures = ctx.record.captures
            for name, kind, module in self._activations:
                c = captures.get(name)
                if c is not None:
                    out[f"{name}.deriv_hist"] = probes.histogram(probes.local_derivative(kind, module, c.out, c.x), bins)
        return out
