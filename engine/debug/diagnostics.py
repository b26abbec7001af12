"""Warnings: what the per-layer numbers say is going wrong, in the article's terms.

Each quantity (quantities/) checks its own numbers and turns them into zero or more conditions
(kind, layer, value, threshold, message). The monitor reports a condition once when it starts
and once when it clears (after it has been false for a few steps in a row), never every step it
holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from msgspec import Struct

from .codec import Int

KINDS = ("vanishing_gradient", "exploding_gradient", "dead_relu", "saturation", "non_finite",
         "loss_diverging", "lr_too_large", "batch_noise")


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
    batch_noise: float = 2.0          # mini-batch noise/signal above this (twice): the batch's gradient is mostly noise
    clear_after: int = 5              # steps a condition must stay false before it clears


class Condition(Struct, frozen=True):
    """Something wrong that holds at this step (a record: its declaration is its schema)."""
    kind: str
    layer: Optional[str]
    value: float
    threshold: float
    message: str
    op: Optional[str] = None


class WarningEvent(Struct, frozen=True):
    """A condition starting or clearing, at a step."""
    step: Int
    kind: str
    layer: Optional[str]
    op: Optional[str]
    value: float
    threshold: float
    message: str
    event: str = "start"   # 'start' or 'clear'


def cleared_message(c: Condition, told, quiet: int) -> str:
    """What a clear says: what changed (`told`: what, its value now, the limit now), else that it
    has not held for `quiet` steps, with the value it had."""
    subject = f"{c.kind} on {c.layer}" if c.layer else c.kind
    if told is not None and told[1] is not None:
        what, value, limit = told
        return (f"cleared: {subject}: {what} is now {fmt(value)} against the limit {fmt(limit)} "
                f"(it was {fmt(c.value)} when it last held)")
    return f"cleared: {subject} has not held for {quiet} steps in a row (it was {fmt(c.value)} against {fmt(c.threshold)})"


def fmt(x: float) -> str:
    return f"{x:.3g}"


def label(layer) -> str:
    return f"{layer.name} ({layer.type})"


@dataclass
class _Active:
    condition: Condition
    quiet_steps: int = 0


@dataclass
class WarningMonitor:
    """Turns each step's conditions into start and clear events."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    active: dict = field(default_factory=dict)   # (kind, layer) -> _Active

    def update(self, step: int, conditions: list, now=None) -> list:
        """`now(condition)`: (what, its value now, the limit now) of a condition that clears, or
        None: the clear then says what changed, not the start's words again."""
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
                told = now(c) if now is not None else None
                value, threshold = (told[1], told[2]) if told is not None and told[1] is not None else (c.value,
                                                                                                      c.threshold)
                events.append(WarningEvent(step, c.kind, c.layer, c.op, value, threshold,
                                           cleared_message(c, told, self.thresholds.clear_after), event="clear"))
        return events

    def holding(self) -> list:
        return [a.condition for a in self.active.values()]
