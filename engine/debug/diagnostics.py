"""Warnings: what the per-layer numbers say is going wrong, in the article's terms.

Each check turns a step's statistics into zero or more conditions (kind, layer, value,
threshold). The monitor reports a condition once when it starts and once when it clears
(after it has been false for a few steps in a row), never every step it holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

KINDS = ("vanishing_gradient", "exploding_gradient", "dead_relu", "saturation", "non_finite",
         "loss_diverging", "lr_too_large")


@dataclass
class Thresholds:
    """When each warning fires. All are configurable (SessionConfig.thresholds)."""
    # The chain-rule product from the loss down to a layer: ‖∂L/∂a_k‖ / ‖∂L/∂a_last‖.
    vanishing_ratio: float = 1e-3     # below this, the gradient vanishes on its way back
    exploding_ratio: float = 1e3      # above this, it explodes
    exploding_norm: float = 1e3       # any parameter's ‖∇θ‖ above this explodes too
    dead_fraction: float = 0.5        # ReLU layers with at least this fraction of dead units
    saturated_fraction: float = 0.5   # sigmoid/tanh layers with at least this fraction saturated
    saturation_level: float = 0.01    # a unit is saturated below this fraction of the max derivative
    diverge_factor: float = 10.0      # loss above this multiple of the best loss (and above the first)
    sparsity_threshold: float = 1e-3  # |θ| below this counts as zero
    lr_edge_factor: float = 1.0       # lr above this multiple of the stability edge (2/λ_max, ...)
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
        def finite(x):  # JSON has no NaN or Infinity
            return x if x is not None and math.isfinite(x) else None
        return {"step": self.step, "kind": self.kind, "layer": self.layer, "op": self.op,
                "value": finite(self.value), "threshold": finite(self.threshold), "message": self.message,
                "event": self.event}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _label(layer) -> str:
    return f"{layer.name} ({layer.type})"


def chain_products(layers) -> list:
    """(layer, ‖∂L/∂output of the layer‖ / ‖∂L/∂output of the last layer with weights‖) per layer
    with weights, input side first: the product of the chain-rule factors from the loss down to it."""
    weighted = [l for l in layers if l.params and l.grad_out_norm is not None]
    if not weighted or not weighted[-1].grad_out_norm:
        return []
    top = weighted[-1].grad_out_norm
    return [(l, l.grad_out_norm / top) for l in weighted[:-1]]


def gradient_conditions(layers, t: Thresholds) -> list:
    conditions = []
    for layer in layers:
        for short, p in layer.params.items():
            if p.grad_norm > t.exploding_norm:
                conditions.append(Condition(
                    "exploding_gradient", layer.name, p.grad_norm, t.exploding_norm,
                    f"{_label(layer)}: ‖∇{short}‖ = {_fmt(p.grad_norm)} is above {_fmt(t.exploding_norm)}: "
                    f"the step θ ← θ − η·∇θL will overshoot; lower the learning rate or the initial weights"))
                break
    flagged = {c.layer for c in conditions} if conditions else ()
    for layer, product in chain_products(layers):
        if layer.name in flagged:
            continue
        if product < t.vanishing_ratio:
            if _dead_above(layer, layers, t):
                continue  # dead ReLUs above explain it, and dead_relu says so
            conditions.append(Condition(
                "vanishing_gradient", layer.name, product, t.vanishing_ratio,
                f"{_label(layer)}: the chain-rule product from the loss down to this layer is "
                f"{_fmt(product)}: the gradient vanishes on its way back (each sigmoid factor is ≤ 1/4)"))
        elif product > t.exploding_ratio:
            conditions.append(Condition(
                "exploding_gradient", layer.name, product, t.exploding_ratio,
                f"{_label(layer)}: the chain-rule product from the loss down to this layer is "
                f"{_fmt(product)}: the gradient grows on its way back; shrink the initial weights"))
    return conditions


def _dead_above(layer, layers, t: Thresholds) -> bool:
    """Whether a ReLU layer between `layer` and the loss has dead units over the threshold."""
    above = layers[[l.name for l in layers].index(layer.name) + 1:]
    return any(l.dead_fraction is not None and l.dead_fraction >= t.dead_fraction for l in above)


def activation_conditions(layers, t: Thresholds) -> list:
    conditions = []
    for layer in layers:
        if layer.dead_fraction is not None and layer.dead_fraction >= t.dead_fraction:
            conditions.append(Condition(
                "dead_relu", layer.name, layer.dead_fraction, t.dead_fraction,
                f"{_label(layer)}: {layer.dead_fraction:.0%} of ReLU units output 0 for the whole batch: "
                f"their derivative is 0, so no gradient reaches the weights before them"))
        if layer.saturated_fraction is not None and layer.saturated_fraction >= t.saturated_fraction:
            conditions.append(Condition(
                "saturation", layer.name, layer.saturated_fraction, t.saturated_fraction,
                f"{_label(layer)}: {layer.saturated_fraction:.0%} of {layer.activation} units are saturated: "
                f"their derivative is below {t.saturation_level:.0%} of its maximum, so the gradient stops"))
    return conditions


def loss_conditions(loss: float, first: float, best: float, t: Thresholds) -> list:
    if loss > t.diverge_factor * best and loss > first and best > 0:
        return [Condition(
            "loss_diverging", None, loss, t.diverge_factor * best,
            f"loss {_fmt(loss)} is over {t.diverge_factor:g}× its best ({_fmt(best)}): gradient descent "
            f"is climbing instead of descending; lower the learning rate")]
    return []


def curvature_conditions(curvature, lr: float, t: Thresholds) -> list:
    """lr_too_large: the learning rate is past the gradient-descent stability edge measured from
    the Hessian's top eigenvalue (checked every step against the latest measurement, so that
    lowering the lr clears it at once)."""
    if curvature is None or curvature.lr_edge is None:
        return []
    limit = t.lr_edge_factor * curvature.lr_edge
    if not lr > limit:
        return []
    if curvature.edge_formula == "2/λ_max":
        why = (f"each step multiplies the error along H's top eigenvector by "
               f"|1 − η·λ_max| = {_fmt(abs(1.0 - lr * curvature.lambda_max))} > 1")
    else:
        why = "with this momentum the error along H's top eigenvector grows every step"
    return [Condition(
        "lr_too_large", None, lr, limit,
        f"learning rate {_fmt(lr)} is past the stability edge {curvature.edge_formula} = "
        f"{_fmt(curvature.lr_edge)} (λ_max = {_fmt(curvature.lambda_max)}, the Hessian's largest "
        f"eigenvalue at step {curvature.step}): {why}, so training will diverge; lower the lr "
        f"below {_fmt(curvature.lr_edge)}")]


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
        if not conditions and not self.active:   # the usual step: nothing holds, nothing to clear
            return []
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
