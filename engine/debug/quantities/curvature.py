"""Curvature: the Hessian's top eigenvalue λ_max, its trace and diagonal, and the learning-rate
edge (see curvatureprobe). Measured at the weights a step starts from, every `curvature_every`
steps after the last measurement, within `curvature_budget` of the training time; off above
`curvature_max_params` parameters, and off with a note if a measurement fails.

Warns `lr_too_large` when the lr is past the stability edge of the latest measurement (checked
every step, so that lowering the lr clears it at once).
"""
from __future__ import annotations

from collections import deque

from ..backend import ModelError
from ..diagnostics import Condition, fmt
from ..schedule import Schedule
from .base import Quantity


def too_large(lr: float, curvature, t) -> bool:
    return curvature is not None and curvature.lr_edge is not None and lr > t.lr_edge_factor * curvature.lr_edge


class Curvature(Quantity):
    name = "curvature"
    param_series = ("hessian_diag",)
    series = ("curvature.lambda_max", "curvature.trace", "curvature.lr_edge")
    always_check = True

    def start(self, session) -> None:
        c = self.config = session.config
        n_params = sum(p.size for p in session.backend.parameters())
        limit = c.curvature_max_params
        every = c.curvature_every if limit is None or n_params <= limit else 0
        self.schedule = Schedule(every, since_last=True, budget=c.curvature_budget)
        self.note = None if every or not c.curvature_every else (
            f"curvature is off: {n_params:,} parameters is more than the limit of {limit:,} "
            "(each measurement takes about 30 Hessian-vector products)")
        self.latest = None                                  # CurvatureStats, the latest measured
        self.history: deque = deque(maxlen=c.history_capacity)
        self._keys = [(p.name, f"{p.name}.hessian_diag") for p in session.backend.parameters()]

    @property
    def every(self) -> int:
        return self.schedule.every

    def before_update(self, ctx) -> None:
        if not self.schedule.due(ctx.step, ctx.clock):
            return
        c, clock = self.config, ctx.clock
        started = clock.now()
        ctx.backend.curvature_cost = 0.0
        try:
            stats = ctx.backend.curvature(ctx.record, ctx.regularizer, ctx.step, iters=c.curvature_iters,
                                          samples=c.curvature_samples, seed=ctx.step - 1)
        except ModelError as failure:
            self.schedule.off()
            error = failure.error
            self.note = f"curvature is off: measuring it failed: {type(error).__name__}: {error}"
            return
        if stats is None:
            return
        self.latest = stats
        self.history.append(stats)
        cost = clock.now() - started
        clock.untimed(cost)   # not training time
        cost += ctx.backend.curvature_cost
        self.schedule.measured(ctx.step, cost, clock)

    def measure(self, ctx) -> None:
        stats = self.latest
        if stats is None:
            return
        ctx.hessian = stats.hessian_diag
        if stats.step != ctx.step:
            return
        series = ctx.series
        series["curvature.lambda_max"] = stats.lambda_max
        series["curvature.trace"] = stats.trace
        if stats.lr_edge is not None:
            series["curvature.lr_edge"] = stats.lr_edge
        diag = stats.hessian_diag
        for name, key in self._keys:
            if diag.get(name) is not None:
                series[key] = diag[name]

    def conditions(self, layers, ctx) -> list:
        return curvature_conditions(self.latest, ctx.backend.lr, ctx.thresholds)

    kinds = ("lr_too_large",)

    def now(self, condition, layers, ctx):
        c = self.latest
        if c is None or c.lr_edge is None:
            return None
        return "the learning rate", ctx.backend.lr, ctx.thresholds.lr_edge_factor * c.lr_edge


def curvature_conditions(curvature, lr: float, t) -> list:
    """lr_too_large: the learning rate is past the gradient-descent stability edge measured from
    the Hessian's top eigenvalue."""
    if not too_large(lr, curvature, t):
        return []
    limit = t.lr_edge_factor * curvature.lr_edge
    if curvature.edge_formula == "2/λ_max":
        why = (f"each step multiplies the error along H's top eigenvector by "
               f"|1 − η·λ_max| = {fmt(abs(1.0 - lr * curvature.lambda_max))} > 1")
    else:
        why = "with this momentum the error along H's top eigenvector grows every step"
    return [Condition(
        "lr_too_large", None, lr, limit,
        f"learning rate {fmt(lr)} is past the stability edge {curvature.edge_formula} = "
        f"{fmt(curvature.lr_edge)} (λ_max = {fmt(curvature.lambda_max)}, the Hessian's largest "
        f"eigenvalue at step {curvature.step}): {why}, so training will diverge; lower the lr "
        f"below {fmt(curvature.lr_edge)}")]
