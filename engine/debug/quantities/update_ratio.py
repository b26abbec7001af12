"""The step's effect on each parameter: ‖θ‖, the update ‖Δθ‖ and its ratio to ‖θ‖, sparsity (the
fraction of |θ| below `sparsity_threshold`) and an adaptive optimiser's effective step.

A two-step quantity: θ is copied before the update and subtracted after it. Each is a pass over
every weight, so it is measured every `detail_every` steps (within `detail_budget` of the
training time), on the first step, on a step-into, on every step while a breakpoint reads one of
these numbers, and whenever the run comes to rest; in between, snapshots carry the latest
measurement. A rest no one could foresee (a pause pressed while running, a breakpoint that
fires) comes after its step: where one may come, θ is copied before every step (one copy of
the weights, a few per cent of a small model's step) and `settle` measures that step at rest.
"""
from __future__ import annotations

import math

import numpy as np

from .. import probes
from ..schedule import Schedule
from .base import Quantity


class UpdateRatio(Quantity):
    name = "update ratio and sparsity"
    param_series = ("weight_norm", "update_ratio", "sparsity", "effective_lr")

    def start(self, session) -> None:
        c = session.config
        self.schedule = Schedule(c.detail_every, budget=c.detail_budget, at_rest=True)
        params = session.backend.parameters()
        weights = session.backend.weights()
        self._before = {p.name: np.empty_like(weights[p.name]) for p in params}
        self._mask = np.empty(max((p.size for p in params), default=0), dtype=bool)
        self._plan = [(p.name, p.size, tuple(f"{p.name}.{stat}" for stat in self.param_series)) for p in params]
        self._due = False
        self._held = False       # self._before holds θ as it was before the latest step
        self._copy_seconds = 0.0
        self.latest: dict = {}   # replaced, not updated: earlier steps' StepLayers hold the old one

    def before_update(self, ctx) -> None:
        self._due = ctx.detailed = self.schedule.due(
            ctx.step, ctx.clock, resting=ctx.traced or ctx.step == 1 or ctx.resting or ctx.wants_detail)
        self._held = self._due or ctx.hold
        if self._held:
            started = ctx.clock.now()
            for name, data in ctx.backend.weights().items():
                np.copyto(self._before[name], data)
            self._copy_seconds = ctx.clock.now() - started

    def measure(self, ctx) -> None:
        if self._due:
            self._measure(ctx)
            self._write_series(ctx.series)
        ctx.detail = self.latest

    def settle(self, ctx, series: dict | None) -> bool:
        """The run came to rest after `ctx`'s step, which did not measure these: measure them now
        (the weights have not changed since), into `series` when the step is not yet in the
        history. False when they were measured, or θ before the step was not kept."""
        if self._due or not self._held:
            return False
        self._measure(ctx)
        self._due = ctx.detailed = True   # (measured once: the subtraction is done in place)
        if series is not None:
            self._write_series(series)
        ctx.detail = self.latest
        return True

    def _write_series(self, series: dict) -> None:
        for name, _, keys in self._plan:
            w_norm, _, ratio, sparsity, effective = self.latest[name]
            series[keys[0]] = w_norm
            series[keys[1]] = ratio
            series[keys[2]] = sparsity
            if effective is not None:
                series[keys[3]] = effective

    def _measure(self, ctx) -> None:
        started = ctx.clock.now()
        threshold, mask, measured = ctx.thresholds.sparsity_threshold, self._mask, {}
        weights, backend = ctx.backend.weights(), ctx.backend
        for name, size, _ in self._plan:
            data = weights[name]
            w_norm = probes.norm(data)
            before = self._before[name]
            np.subtract(data, before, out=before)  # Δθ, in the buffer refilled before the update
            update = probes.norm(before)
            small = probes.count_small(data, threshold, mask)
            measured[name] = (w_norm, update, update / w_norm if w_norm > 0 else math.nan,
                              small / max(size, 1), backend.effective_lr(name))
        self.latest = measured
        self.schedule.measured(ctx.step, self._copy_seconds + ctx.clock.now() - started, ctx.clock)
