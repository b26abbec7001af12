"""A quantity: one measured thing, with its history series, its schedule and its warnings.

The session calls, each step, for every quantity in `quantities.ALL`'s order:
  before_update(ctx)   before the optimiser changes the weights (a two-step quantity keeps what
                       it needs here: θ before the step, a curvature or noise measurement of the
                       step's starting point)
  measure(ctx)         after the update: its numbers into the context's slots and `ctx.series`,
                       and itself into `ctx.warn` when one of them is over a threshold
  conditions(...)      the full warning check with its messages, run only when the quantity is in
                       `ctx.warn` (or always, for those whose check is cheap: `always_check`)
The quick check in `measure` and the full one in `conditions` use the same predicates, kept in
the quantity's own file, so they cannot disagree.
"""
from __future__ import annotations


class Quantity:
    name = ""
    param_series: tuple = ()    # '<parameter>.<stat>' series it writes
    layer_series: tuple = ()    # '<layer>.<stat>'
    series: tuple = ()          # step-wide series
    always_check = False        # its conditions run every step (they read only a few numbers)
    reads_layers = False        # start() plans by the backend's layers (run again when they grow)

    def start(self, session) -> None:
        """Once, before the first step: what it needs to know of the model and the configuration."""

    def before_update(self, ctx) -> None:
        pass

    def measure(self, ctx) -> None:
        pass

    def conditions(self, layers, ctx) -> list:
        """diagnostics.Condition list for this step (`layers`: the built LayerStats)."""
        return []

    kinds: tuple = ()           # the warning kinds its conditions have

    def now(self, condition, layers, ctx):
        """(what, its value now, the limit now) for one of its conditions that has just cleared,
        so that the clear says what changed; None where it cannot say."""
        return None
