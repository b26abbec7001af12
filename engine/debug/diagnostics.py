"""Warnings: what the per-layer numbers say is going wrong, in the article's terms.

Each check turns a step's statistics into zero or more conditions (kind, layer, value,
threshold). The monitor reports a condition once when it starts and once when it clears
(after it has been false for a few steps in a row), never every step it holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

KINDS = ("vanishing_gradient", "exploding_gradient", "dead_relu", "saturation", "non_finite",
         "loss_diverging")


@dataclass
class Thresholds:
    """When each warning fires. All are configurable (SessionConfig.thresholds)."""
    vanishing_ratio: float = 1e-3     # a layer's ‖∇W‖ below this fraction of a later layer's
    exploding_ratio: float = 1e3      # a layer's ‖∇W‖ above this multiple of every later layer's
    exploding_norm: float = 1e3       # or any layer's ‖∇W‖ above this
    dead_fraction: float = 0.5        # ReLU layers with at least this fraction of dead units
    saturated_fraction: float = 0.5   # sigmoid/tanh layers with at least this fraction saturated
    saturation_level: float = 0.01    # a unit is saturated below this fraction of the max derivative
    diverge_factor: float = 10.0      # loss above this multiple of the best loss (and above the first)
    sparsity_threshold: float = 1e-3  # |θ| below this counts as zero
    clear_after: int = 5              # steps a condition must stay false before it clears


@dataclass(frozen=True)
class Condition:
    kind: str
    layer: str | None
    value: float
    threshold: float
    message: str
    op: str | None = None


@dataclass(frozen=True)
class WarningEvent:
    step: int
    kind: str
    layer: str | None
    op: str | None
    value: float
    threshold: float
    message: str
    event: str = "start"   # 'start' or 'clear'

    def to_dict(self) -> dict:
        value = self.value if self.value is None or math.isfinite(self.value) else str(self.value)
        return {"step": self.step, "kind": self.kind, "layer": self.layer, "op": self.op, "value": value,
                "threshold": self.threshold, "message": self.message, "event": self.event}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def layer_grad_norms(layers) -> list:
    """(layer name, ‖∇θ‖ of its parameters' data-loss gradients) in forward order."""
    out = []
    for layer in layers:
        if layer.params:
            total = math.sqrt(sum(p.grad_norm ** 2 for p in layer.params.values()))
            out.append((layer.name, total))
    return out


def gradient_conditions(layers, t: Thresholds) -> list:
    conditions = []
    norms = layer_grad_norms(layers)
    for k, (name, g) in enumerate(norms):
        later = [n for _, n in norms[k + 1:]]
        if g > t.exploding_norm:
            conditions.append(Condition(
                "exploding_gradient", name, g, t.exploding_norm,
                f"{name}: ‖∇W‖ = {_fmt(g)} is above {_fmt(t.exploding_norm)}: the update "
                f"θ ← θ − η·∇θL will overshoot; lower the learning rate or the initial weights"))
            continue
        if not later or max(later) <= 0:
            continue
        ratio = g / max(later)
        if ratio < t.vanishing_ratio:
            conditions.append(Condition(
                "vanishing_gradient", name, ratio, t.vanishing_ratio,
                f"{name}: ‖∇W‖ = {_fmt(g)} is {_fmt(ratio)} of the layers nearer the loss: the "
                f"chain-rule product of the layers above it shrinks the gradient (sigmoid' ≤ 1/4)"))
        elif min(later) > 0 and g / min(later) > t.exploding_ratio:
            growth = g / min(later)
            conditions.append(Condition(
                "exploding_gradient", name, growth, t.exploding_ratio,
                f"{name}: ‖∇W‖ = {_fmt(g)} is {_fmt(growth)}× a layer nearer the loss: the chain-rule "
                f"product of the layers above it grows the gradient; shrink the initial weights"))
    return conditions


def activation_conditions(layers, t: Thresholds) -> list:
    conditions = []
    for layer in layers:
        if layer.dead_fraction is not None and layer.dead_fraction >= t.dead_fraction:
            conditions.append(Condition(
                "dead_relu", layer.name, layer.dead_fraction, t.dead_fraction,
                f"{layer.name}: {layer.dead_fraction:.0%} of ReLU units output 0 for the whole batch: "
                f"their derivative is 0, so no gradient reaches the weights before them"))
        if layer.saturated_fraction is not None and layer.saturated_fraction >= t.saturated_fraction:
            conditions.append(Condition(
                "saturation", layer.name, layer.saturated_fraction, t.saturated_fraction,
                f"{layer.name}: {layer.saturated_fraction:.0%} of {layer.activation} units are saturated: "
                f"their derivative is below {t.saturation_level:.0%} of its maximum, so the gradient stops"))
    return conditions


def loss_conditions(loss: float, first: float, best: float, t: Thresholds) -> list:
    if loss > t.diverge_factor * best and loss > first and best > 0:
        return [Condition(
            "loss_diverging", None, loss, t.diverge_factor * best,
            f"loss {_fmt(loss)} is over {t.diverge_factor:g}× its best ({_fmt(best)}): gradient descent "
            f"is climbing instead of descending; lower the learning rate")]
    return []


@dataclass
class _Active:
    condition: Condition
    quiet_steps: int = 0


@dataclass
class WarningMonitor:
    """Turns each step's conditions into start and clear events."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    active: dict = field(default_factory=dict)   # (kind, layer) -> _Active

    def update(self, step: int, conditions: list) -> list:
        events = []
        seen = set()
        for c in conditions:
            key = (c.kind, c.layer)
            seen.add(key)
            if key in self.active:
                self.active[key].condition = c
                self.active[key].quiet_steps = 0
            else:
                self.active[key] = _Active(c)
                events.append(WarningEvent(step, c.kind, c.layer, c.op, c.value, c.threshold, c.message))
        for key in list(self.active):
            if key in seen:
                continue
            entry = self.active[key]
            entry.quiet_steps += 1
            if entry.quiet_steps >= self.thresholds.clear_after:
                c = entry.condition
                del self.active[key]
                events.append(WarningEvent(step, c.kind, c.layer, c.op, c.value, c.threshold,
                                           f"cleared: {c.message}", event="clear"))
        return events

    def holding(self) -> list:
        return [a.condition for a in self.active.values()]
