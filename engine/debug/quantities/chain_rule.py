"""The chain-rule product from the loss down to each layer: vanishing and exploding gradients.

Per layer, ‖∂L/∂input‖ through the layer and ‖∂L/∂output‖ (their ratio is the layer's factor in
the product), and where the input also goes elsewhere (a fork) ‖∂L/∂input‖ over every path. For
the layers with weights, the product from the loss down to layer k is ‖∂L/∂a_k‖ / ‖∂L/∂a_last‖;
below `vanishing_ratio` the gradient vanishes on its way back (unless dead ReLUs above explain
it: `dead_relu` says so), above `exploding_ratio` it explodes.
"""
from __future__ import annotations

from ..diagnostics import Condition, fmt
from .activation_health import dead
from .base import Quantity
from .gradient_norms import exploding, exploding_conditions


def vanishing(product: float, t) -> bool:
    return product < t.vanishing_ratio


def explodes(product: float, t) -> bool:
    return product > t.exploding_ratio


class ChainRule(Quantity):
    name = "chain-rule product"
    reads_layers = True
    layer_series = ("grad_out_norm",)

    def start(self, session) -> None:
        self._plan = [(layer.name, layer.has_params, f"{layer.name}.grad_out_norm")
                      for layer in session.backend.layers()]
        self._rows = [(layer.name, layer.type, layer.has_params) for layer in session.backend.layers()]
        self._param_layers = [p.layer for p in session.backend.parameters()]

    def measure(self, ctx) -> None:
        captures, series, numbers, norm = ctx.record.captures, ctx.series, ctx.layer_grads, ctx.norm
        weighted = []    # ‖∂L/∂output‖ of the layers with parameters
        for name, has_params, key in self._plan:
            c = captures.get(name)
            if c is None:
                numbers.append((None, None, None, None))
                continue
            grad_in = norm(c.grad_x) if c.grad_x is not None else None
            whole = norm(c.grad_x_total) if c.grad_x_total is not None else None
            grad_out = None
            if c.grad_out is not None:
                grad_out = series[key] = norm(c.grad_out)
                if has_params:
                    weighted.append(grad_out)
            numbers.append((c.out.shape, grad_in, grad_out, whole))
        if len(weighted) > 1 and weighted[-1]:
            top, t = weighted[-1], ctx.thresholds   # chain_products, as numbers
            if any(vanishing(v / top, t) or explodes(v / top, t) for v in weighted[:-1]):
                ctx.warn.add(self)

    kinds = ("vanishing_gradient", "exploding_gradient")

    def now(self, condition, layers, ctx):
        t = ctx.thresholds
        if condition.threshold == t.exploding_norm:   # (GradientNorms' exploding_gradient)
            return None
        product = next((p for layer, p in chain_products(layers) if layer.name == condition.layer), None)
        limit = t.vanishing_ratio if condition.kind == "vanishing_gradient" else t.exploding_ratio
        return None if product is None else ("the chain-rule product", product, limit)

    def conditions(self, layers, ctx) -> list:
        # From the numbers, without building the layers' statistics (a vanishing gradient often
        # holds for many steps in a row, and this check then runs every step).
        t, acts, grads = ctx.thresholds, ctx.layer_acts, ctx.layer_grads
        rows = [(name, type_name, has_params, grads[i][2], acts[i][1], grads[i][1])
                for i, (name, type_name, has_params) in enumerate(self._rows)]
        flagged = {layer for layer, numbers in zip(self._param_layers, ctx.param_numbers) if exploding(numbers[0], t)}
        return _conditions(rows, flagged, t)


def _rows_of(layers) -> list:
    """(name, type, has weights, ‖∂L/∂out‖, dead fraction, ‖∂L/∂in‖) per layer."""
    return [(l.name, l.type, bool(l.params), l.grad_out_norm, l.dead_fraction, l.grad_in_norm) for l in layers]


def _products(rows) -> list:
    """(row, product) per layer with weights but the last, input side first (rows as _rows_of)."""
    weighted = [row for row in rows if row[2] and row[3] is not None]
    if not weighted or not weighted[-1][3]:
        return []
    top = weighted[-1][3]
    return [(row, row[3] / top) for row in weighted[:-1]]


def chain_products(layers) -> list:
    """(layer, ‖∂L/∂output of the layer‖ / ‖∂L/∂output of the last layer with weights‖) per layer
    with weights, input side first: the product of the chain-rule factors from the loss down to it."""
    by_name = {l.name: l for l in layers}
    return [(by_name[row[0]], product) for row, product in _products(_rows_of(layers))]


def chain_conditions(layers, t) -> list:
    # A layer already said to explode (a parameter over the norm limit) is not told again.
    flagged = {l.name for l in layers if any(exploding(p.grad_norm, t) for p in l.params.values())}
    return _conditions(_rows_of(layers), flagged, t)


def _conditions(rows, flagged, t) -> list:
    dead_above, seen = {}, False   # whether a ReLU layer between a layer and the loss has dead units
    kinds_above, kinds = {}, set()  # the layer types between a layer and the loss
    # the factors ‖∂L/∂in‖/‖∂L/∂out‖ of those layers: how many shrink it, and the smallest
    smallest_above, smallest, shrinking = {}, None, 0
    for name, type_name, _, grad_out, dead_fraction, grad_in in reversed(rows):
        dead_above[name] = seen
        seen = seen or dead(dead_fraction, t)
        kinds_above[name] = frozenset(kinds)
        kinds.add(type_name)
        smallest_above[name] = (shrinking, smallest)
        if grad_in is not None and grad_out:
            factor = grad_in / grad_out
            shrinking += factor < 1
            if smallest is None or factor < smallest[0]:
                smallest = (factor, name, type_name)
    conditions = []
    for (name, type_name, *_), product in _products(rows):
        if name in flagged:
            continue
        if vanishing(product, t):
            if dead_above[name]:
                continue  # dead ReLUs above explain it, and dead_relu says so
            conditions.append(Condition(
                "vanishing_gradient", name, product, t.vanishing_ratio,
                f"{name} ({type_name}): the chain-rule product from the loss down to this layer is "
                f"{fmt(product)}: the gradient vanishes on its way back{_smallest(smallest_above[name])} "
                f"({_why_small(kinds_above[name])})"))
        elif explodes(product, t):
            conditions.append(Condition(
                "exploding_gradient", name, product, t.exploding_ratio,
                f"{name} ({type_name}): the chain-rule product from the loss down to this layer is "
                f"{fmt(product)}: the gradient grows on its way back; shrink the initial weights"))
    return conditions


def gradient_conditions(layers, t) -> list:
    """Every gradient warning of a step: parameters over the norm limit, then the chain products."""
    return exploding_conditions(layers, t) + chain_conditions(layers, t)


def _smallest(above) -> str:
    """The factors that shrink the gradient, in words: how many, and the smallest."""
    shrinking, factor = above
    if not shrinking:
        return ""
    value, name, type_name = factor
    return f"; {shrinking} factor{'s' if shrinking != 1 else ''} below 1, the smallest {name} ({type_name}) ×{fmt(value)}"


def _why_small(kinds) -> str:
    """What makes the factors between a layer and the loss small, from the layers there."""
    if "Sigmoid" in kinds:
        return "each sigmoid factor is ≤ 1/4"
    if "Tanh" in kinds:
        return "each tanh factor is ≤ 1, and far less where units saturate"
    return "the factors between it and the loss multiply to almost nothing: small weights, or units that are off"
