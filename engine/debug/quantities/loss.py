"""The loss, the learning rate, the penalty and the validation loss (every `val_every` steps).

Warns `loss_diverging` when the loss is over `diverge_factor` times its best so far (and above
its first value): gradient descent is climbing instead of descending.
"""
from __future__ import annotations

import math

from ..backend import ModelError
from ..diagnostics import Condition, fmt
from ..schedule import Schedule
from .base import Quantity


def diverging(loss: float, first: float, best: float, t) -> bool:
    return loss > t.diverge_factor * best and loss > first and best > 0


class Loss(Quantity):
    name = "loss and validation"
    series = ("loss", "lr", "val_loss", "penalty")
    always_check = True

    def start(self, session) -> None:
        self.val_data = session.spec.val_data
        self.schedule = Schedule(session.config.val_every if self.val_data is not None else 0)
        self.first = None
        self.best = math.inf
        self.last_val = None     # the latest validation loss (snapshots carry it between measurements)
        self.loss = math.nan

    def measure(self, ctx) -> None:
        loss = self.loss = ctx.record.loss
        if self.first is None:
            self.first = loss
        self.best = min(self.best, loss)
        series = ctx.series
        series["loss"] = loss
        series["lr"] = ctx.backend.lr
        if self.schedule.due(ctx.step, ctx.clock):
            try:
                self.last_val = series["val_loss"] = ctx.backend.validation_loss(self.val_data)
            except ModelError as failure:
                ctx.failures.append(("computing the validation loss: ", failure.error))
        if ctx.regularizer is not None:
            series["penalty"] = ctx.penalty

    def conditions(self, layers, ctx) -> list:
        return loss_conditions(self.loss, self.first, self.best, ctx.thresholds)

    kinds = ("loss_diverging",)

    def now(self, condition, layers, ctx):
        return "the loss", self.loss, ctx.thresholds.diverge_factor * self.best


def loss_conditions(loss: float, first: float, best: float, t) -> list:
    if not diverging(loss, first, best, t):
        return []
    return [Condition(
        "loss_diverging", None, loss, t.diverge_factor * best,
        f"loss {fmt(loss)} is over {t.diverge_factor:g}× its best ({fmt(best)}): gradient descent "
        f"is climbing instead of descending; lower the learning rate")]
