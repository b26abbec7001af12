"""Activation health: each activation's mean local derivative (its factor in the chain-rule
product), the fraction of dead units (ReLU: 0 for the whole batch) and of saturated ones
(sigmoid, tanh: derivative below `saturation_level` of its maximum for the whole batch).

Warns `dead_relu` at `dead_fraction` or more dead units and `saturation` at `saturated_fraction`
or more saturated ones: no gradient passes them back.
"""
from __future__ import annotations

from .. import probes
from ..diagnostics import Condition, label
from .base import Quantity


def dead(fraction, t) -> bool:
    return fraction is not None and fraction >= t.dead_fraction


def saturated(fraction, t) -> bool:
    return fraction is not None and fraction >= t.saturated_fraction


class ActivationHealth(Quantity):
    name = "activation health"
    layer_series = ("mean_local_derivative",)

    def start(self, session) -> None:
        self._plan = [(layer.name, layer.activation, layer.module, f"{layer.name}.mean_local_derivative")
                      for layer in session.backend.layers()]

    def measure(self, ctx) -> None:
        captures, series, numbers, t = ctx.record.captures, ctx.series, ctx.layer_acts, ctx.thresholds
        level, none = t.saturation_level, (None, None, None)
        for name, kind, module, key in self._plan:
            c = captures.get(name) if kind is not None else None
            if c is None:
                numbers.append(none)
                continue
            stats = probes.activation_stats(kind, module, c.out, level, c.x)
            numbers.append(stats)
            series[key] = stats[0]
            if dead(stats[1], t) or saturated(stats[2], t):
                ctx.warn.add(self)

    def conditions(self, layers, ctx) -> list:
        return activation_conditions(layers, ctx.thresholds)


def activation_conditions(layers, t) -> list:
    conditions = []
    for layer in layers:
        if dead(layer.dead_fraction, t):
            conditions.append(Condition(
                "dead_relu", layer.name, layer.dead_fraction, t.dead_fraction,
                f"{label(layer)}: {layer.dead_fraction:.0%} of ReLU units output 0 for the whole batch: "
                f"their derivative is 0, so no gradient reaches the weights before them"))
        if saturated(layer.saturated_fraction, t):
            conditions.append(Condition(
                "saturation", layer.name, layer.saturated_fraction, t.saturated_fraction,
                f"{label(layer)}: {layer.saturated_fraction:.0%} of {layer.activation} units are saturated: "
                f"their derivative is below {t.saturation_level:.0%} of its maximum, so the gradient stops"))
    return conditions
