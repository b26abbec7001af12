"""Mini-batch gradient noise (see batchnoise.py): noise/signal ν = ‖the standard error of the
batch's mean gradient‖ / ‖that gradient‖, for each parameter and the whole model, from
`batch_noise_groups` micro-batches of the step's own batch at the weights the step started
from. For every model, calcml or PyTorch, on the steps the session runs itself (a training
script's own loop is not measured: its loss function is not known).

Measured every `batch_noise_every` steps (the first at that step), within `batch_noise_budget`
of the training time when set; off with a note if a measurement fails. Each costs about one
step's forward and backward pass, split into that many smaller ones.

Warns `batch_noise` when the latest two measurements' ν are both over `Thresholds.batch_noise`:
noise that dominates from one measurement to the next, not one batch whose mean gradient happened
to be short (ν from one batch is itself an estimate, and near a minimum it scatters widely).
Checked every step against them, like the curvature's lr edge: a measurement under the limit
clears it.
"""
from __future__ import annotations

import math

import numpy as np

from .. import batchnoise
from ..backend import ModelError
from ..diagnostics import Condition, fmt
from ..schedule import Schedule
from .base import Quantity

OBSERVED = ("mini-batch noise is not measured for a training script's own loop: the debugger does not "
            "know its loss function, so it cannot evaluate the batch again in parts")


def over(stats, t) -> bool:
    return stats is not None and stats.noise_signal is not None and stats.noise_signal > t.batch_noise


def dominates(latest, previous, t) -> bool:
    """The latest two measurements both say the noise is longer than the signal."""
    return latest is not None and latest.note is None and over(latest, t) and over(previous, t)


def population_of(spec) -> int | None:
    """How many examples the data set has: known when the model file's data are arrays (X, y)."""
    data = getattr(spec, "data", None)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray) and data[0].ndim:
        return len(data[0])
    return None


class BatchNoise(Quantity):
    name = "mini-batch noise"
    param_series = ("batch_noise",)
    series = ("batch_noise",)
    always_check = True
    kinds = ("batch_noise",)

    def start(self, session) -> None:
        c = self.config = session.config
        self.schedule = Schedule(c.batch_noise_every, since_last=True, budget=c.batch_noise_budget)
        self.schedule.last = 0          # the first at step `every`, not at step 1
        self.population = population_of(session.spec)
        self.latest = None              # BatchNoiseStats, the latest measured (its note: why it is off)
        self.previous = None            # the one before it
        self._keys = [(p.name, f"{p.name}.batch_noise") for p in session.backend.parameters()]

    @property
    def note(self) -> str | None:
        return self.latest.note if self.latest is not None else None

    def before_update(self, ctx) -> None:
        if not self.schedule.due(ctx.step, ctx.clock):
            return
        if ctx.record.batch is None:
            self._off(ctx.step, OBSERVED)
            return
        clock = ctx.clock
        started = clock.now()
        try:
            stats = ctx.backend.batch_noise(ctx.record, self.config.batch_noise_groups, self.population, ctx.step)
        except ModelError as failure:
            error = failure.error
            self._off(ctx.step, f"mini-batch noise is off: measuring it failed: {type(error).__name__}: {error}")
            return
        cost = clock.now() - started
        clock.untimed(cost)   # not training time
        self.schedule.measured(ctx.step, cost, clock)
        if stats is not None:
            self.previous, self.latest = self.latest, stats

    def _off(self, step: int, note: str) -> None:
        self.schedule.off()
        self.latest = batchnoise.with_note(self.latest, step, note)

    def measure(self, ctx) -> None:
        stats = self.latest
        if stats is None or stats.step != ctx.step or stats.note is not None:
            return
        series = ctx.series
        if _finite(stats.noise_signal):
            series["batch_noise"] = stats.noise_signal
        by_param = stats.by_param
        for name, key in self._keys:
            value = by_param.get(name)
            if _finite(value):
                series[key] = value

    def conditions(self, layers, ctx) -> list:
        return batch_noise_conditions(self.latest, self.previous, ctx.backend.lr, ctx.thresholds)

    def now(self, condition, layers, ctx):
        stats = self.latest
        if stats is None or stats.note is not None or stats.noise_signal is None:
            return None
        return f"noise/signal (measured at step {stats.step})", stats.noise_signal, ctx.thresholds.batch_noise


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def batch_noise_conditions(stats, previous, lr: float, t) -> list:
    """batch_noise: the latest two measurements say the batch's gradient is mostly noise."""
    if not dominates(stats, previous, t):
        return []
    nu = stats.noise_signal
    needed = batchnoise.needed_batch(stats)
    bigger = (f"a batch of about {needed:,} examples (now {stats.batch_size:,}: it would bring noise/signal to 1)"
              if needed else "a larger batch")
    return [Condition(
        "batch_noise", None, nu, t.batch_noise,
        f"noise/signal {fmt(nu)} at step {stats.step} ({fmt(previous.noise_signal)} at step {previous.step}): "
        f"the batch's gradient is mostly noise (another batch of {stats.batch_size:,} examples would typically "
        f"lie {fmt(nu)}× the gradient's own length away from it), so a step follows the batch more than the "
        f"data; {bigger} or a smaller lr (now {fmt(lr)}) would help")]
