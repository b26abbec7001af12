"""Activation health: each activation's mean local derivative (its factor in the chain-rule
product), the fraction of dead units (ReLU: 0 for the whole batch) and of saturated ones
(sigmoid, tanh: derivative below `saturation_level` of its maximum for the whole batch; a
softmax's rows: over 1 − `saturation_level` of the weight on one entry).

Warns `dead_relu` at `dead_fraction` or more dead units and `saturation` at `saturated_fraction`
or more saturated ones: no gradient passes them back.
"""
from __future__ import annotations

import numpy as np

from .. import probes
from ..diagnostics import Condition
from .base import Quantity


def dead(fraction, t) -> bool:
    return fraction is not None and fraction >= t.dead_fraction


def saturated(fraction, t) -> bool:
    return fraction is not None and fraction >= t.saturated_fraction


STACK_FROM = 3   # layers: below it a stack's own cost is more than the Python it saves


class ActivationHealth(Quantity):
    name = "activation health"
    reads_layers = True
    layer_series = ("mean_local_derivative",)

    def start(self, session) -> None:
        self._plan = [(layer.name, probes.activation_probe(layer.activation, layer.module),
                       f"{layer.name}.mean_local_derivative")
                      for layer in session.backend.layers() if layer.activation is not None]
        self._none = [(None, None, None)] * len(session.backend.layers())
        self._at = [i for i, layer in enumerate(session.backend.layers()) if layer.activation is not None]
        self._rows = [(layer.name, layer.type, layer.activation) for layer in session.backend.layers()
                      if layer.activation is not None]

    def measure(self, ctx) -> None:
        captures, series, t = ctx.record.captures, ctx.series, ctx.thresholds
        numbers = ctx.layer_acts = list(self._none)
        level = t.saturation_level
        # Small layers of one op and shape are measured stacked, a few at a time: for them the
        # Python around each reduction costs more than a copy of the outputs.
        groups: dict = {}   # (op and its parameters, output shape) -> [(index, probe, key, capture)]
        stack = probes.stack_bytes()
        for at, (name, probe, key) in zip(self._at, self._plan):
            c = captures.get(name)
            if c is not None:
                groups.setdefault((probe.key, c.out.shape, c.unit_axis), []).append((at, probe, key, c))
        with np.errstate(all="ignore"):   # NaN and overflow are measured, not warned about
            for (_, shape, unit_axis), members in groups.items():
                probe = members[0][1]
                per = stack // (8 * shape[0] * shape[1]) if len(shape) == 2 else 0
                if len(members) >= STACK_FROM and per >= STACK_FROM:
                    measured = []
                    for start in range(0, len(members), per):
                        chunk = members[start:start + per]
                        measured += (probe.stats_many([m[3].out for m in chunk], [m[3].x for m in chunk], level)
                                     if len(chunk) > 1 else [probe.stats(chunk[0][3].out, chunk[0][3].x, level)])
                else:
                    measured = [probe.stats(m[3].out, m[3].x, level, unit_axis) for m in members]
                for (at, _, key, _), stats in zip(members, measured):
                    numbers[at] = stats
                    series[key] = stats[0]
                    if dead(stats[1], t) or saturated(stats[2], t):
                        ctx.warn.add(self)

    kinds = ("dead_relu", "saturation")

    def now(self, condition, layers, ctx):
        layer = next((l for l in layers if l.name == condition.layer), None)
        if layer is None:
            return None
        t = ctx.thresholds
        if condition.kind == "dead_relu":
            return "the dead fraction", layer.dead_fraction, t.dead_fraction
        return "the saturated fraction", layer.saturated_fraction, t.saturated_fraction

    def conditions(self, layers, ctx) -> list:
        # From the numbers, without building the layers' statistics (these warnings often hold
        # for many steps in a row, and this check then runs every step).
        acts = ctx.layer_acts
        return _conditions(((name, kind_type, kind, *acts[at][1:3]) for at, (name, kind_type, kind)
                            in zip(self._at, self._rows)), ctx.thresholds)


def activation_conditions(layers, t) -> list:
    """The warnings of a step's LayerStats."""
    return _conditions(((l.name, l.type, l.activation, l.dead_fraction, l.saturated_fraction) for l in layers), t)


def _conditions(rows, t) -> list:
    """rows: (name, type, activation, dead fraction, saturated fraction) per layer."""
    conditions = []
    for name, type_name, activation, dead_fraction, saturated_fraction in rows:
        if dead(dead_fraction, t):
            conditions.append(Condition(
                "dead_relu", name, dead_fraction, t.dead_fraction,
                f"{name} ({type_name}): {dead_fraction:.0%} of ReLU units output 0 for the whole batch: "
                f"their derivative is 0, so no gradient reaches the weights before them"))
        if saturated(saturated_fraction, t):
            what = (f"softmax rows put over {1 - t.saturation_level:.0%} of their weight on one entry: their "
                    f"Jacobian diag(p) − ppᵀ is nearly 0, so almost no gradient reaches those logits"
                    if activation == "softmax" else
                    f"{activation} units are saturated: their derivative is below {t.saturation_level:.0%} of "
                    f"its maximum, so the gradient stops")
            conditions.append(Condition("saturation", name, saturated_fraction, t.saturated_fraction,
                                        f"{name} ({type_name}): {saturated_fraction:.0%} of {what}"))
    return conditions
