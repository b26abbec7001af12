"""‖∇θ‖ per parameter: the data loss's gradient, the penalty's, and the one the optimiser used.

Warns `exploding_gradient` when a parameter's data-loss gradient norm is above
`Thresholds.exploding_norm`: the step θ ← θ − η·∇θL then overshoots.
"""
from __future__ import annotations

from ..diagnostics import Condition, fmt, label
from .base import Quantity


def exploding(grad_norm: float, t) -> bool:
    return grad_norm > t.exploding_norm


class GradientNorms(Quantity):
    name = "gradient norms"
    param_series = ("grad_norm", "penalty_grad_norm")

    def start(self, session) -> None:
        self._plan = [(p.name, f"{p.name}.grad_norm", f"{p.name}.penalty_grad_norm")
                      for p in session.backend.parameters()]

    def measure(self, ctx) -> None:
        data_grads, norms, totals = ctx.record.data_grads, ctx.grad_norms, ctx.backend.grads()
        penalty_grads, series, numbers = ctx.penalty_grads, ctx.series, ctx.param_numbers
        limit = ctx.thresholds.exploding_norm
        for name, grad_key, penalty_key in self._plan:
            g = data_grads[name]
            grad_norm = norms[name] if g is not None else 0.0
            total = totals[name]
            if total is g and not penalty_grads:   # the usual case: the gradient used is the data loss's
                penalty_norm, total_norm = 0.0, grad_norm
            else:
                pg = penalty_grads.get(name)
                penalty_norm = ctx.norm(pg) if pg is not None else 0.0
                total_norm = grad_norm if total is g else (ctx.norm(total) if total is not None else 0.0)
            numbers.append((grad_norm, penalty_norm, total_norm))
            if grad_norm > limit:
                ctx.warn.add(self)
            series[grad_key] = grad_norm
            series[penalty_key] = penalty_norm

    def conditions(self, layers, ctx) -> list:
        return exploding_conditions(layers, ctx.thresholds)

    kinds = ("exploding_gradient",)

    def now(self, condition, layers, ctx):
        t = ctx.thresholds
        layer = next((l for l in layers if l.name == condition.layer), None)
        if condition.threshold != t.exploding_norm or layer is None or not layer.params:
            return None
        return "the largest ‖∇θ‖", max(p.grad_norm for p in layer.params.values()), t.exploding_norm


def exploding_conditions(layers, t) -> list:
    conditions = []
    for layer in layers:
        for short, p in layer.params.items():
            if exploding(p.grad_norm, t):
                conditions.append(Condition(
                    "exploding_gradient", layer.name, p.grad_norm, t.exploding_norm,
                    f"{label(layer)}: ‖∇{short}‖ = {fmt(p.grad_norm)} is above {fmt(t.exploding_norm)}: "
                    f"the step θ ← θ − η·∇θL will overshoot; lower the learning rate or the initial weights"))
                break
    return conditions
