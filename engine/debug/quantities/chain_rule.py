"""The chain-rule product from the loss down to each layer: vanishing and exploding gradients.

Per layer, ‖∂L/∂input‖ and ‖∂L/∂output‖ (their ratio is the layer's factor in the product). For
the layers with weights, the product from the loss down to layer k is ‖∂L/∂a_k‖ / ‖∂L/∂a_last‖;
below `vanishing_ratio` the gradient vanishes on its way back (unless dead ReLUs above explain
it: `dead_relu` says so), above `exploding_ratio` it explodes.
"""
from __future__ import annotations

from ..diagnostics import Condition, fmt, label
from .activation_health import dead
from .base import Quantity
from .gradient_norms import exploding, exploding_conditions


def vanishing(product: float, t) -> bool:
    return product < t.vanishing_ratio


def explodes(product: float, t) -> bool:
    return product > t.exploding_ratio


class ChainRule(Quantity):
    name = "chain-rule product"
    layer_series = ("grad_out_norm",)

    def start(self, session) -> None:
        self._plan = [(layer.name, layer.has_params, f"{layer.name}.grad_out_norm")
                      for layer in session.backend.layers()]

    def measure(self, ctx) -> None:
        captures, series, numbers, norm = ctx.record.captures, ctx.series, ctx.layer_grads, ctx.norm
        weighted = []    # ‖∂L/∂output‖ of the layers with parameters
        for name, has_params, key in self._plan:
            c = captures.get(name)
            if c is None:
                numbers.append((None, None, None))
                continue
            grad_in = norm(c.grad_x) if c.grad_x is not None else None
            grad_out = None
            if c.grad_out is not None:
                grad_out = series[key] = norm(c.grad_out)
                if has_params:
                    weighted.append(grad_out)
            numbers.append((c.out.shape, grad_in, grad_out))
        if len(weighted) > 1 and weighted[-1]:
            top, t = weighted[-1], ctx.thresholds   # chain_products, as numbers
            if any(vanishing(v / top, t) or explodes(v / top, t) for v in weighted[:-1]):
                ctx.warn.add(self)

    def conditions(self, layers, ctx) -> list:
        return chain_conditions(layers, ctx.thresholds)


def chain_products(layers) -> list:
    """(layer, ‖∂L/∂output of the layer‖ / ‖∂L/∂output of the last layer with weights‖) per layer
    with weights, input side first: the product of the chain-rule factors from the loss down to it."""
    weighted = [l for l in layers if l.params and l.grad_out_norm is not None]
    if not weighted or not weighted[-1].grad_out_norm:
        return []
    top = weighted[-1].grad_out_norm
    return [(l, l.grad_out_norm / top) for l in weighted[:-1]]


def chain_conditions(layers, t) -> list:
    # A layer already said to explode (a parameter over the norm limit) is not told again.
    flagged = {l.name for l in layers if any(exploding(p.grad_norm, t) for p in l.params.values())}
    dead_above = _dead_above(layers, t)
    conditions = []
    for layer, product in chain_products(layers):
        if layer.name in flagged:
            continue
        if vanishing(product, t):
            if dead_above[layer.name]:
                continue  # dead ReLUs above explain it, and dead_relu says so
            conditions.append(Condition(
                "vanishing_gradient", layer.name, product, t.vanishing_ratio,
                f"{label(layer)}: the chain-rule product from the loss down to this layer is "
                f"{fmt(product)}: the gradient vanishes on its way back (each sigmoid factor is ≤ 1/4)"))
        elif explodes(product, t):
            conditions.append(Condition(
                "exploding_gradient", layer.name, product, t.exploding_ratio,
                f"{label(layer)}: the chain-rule product from the loss down to this layer is "
                f"{fmt(product)}: the gradient grows on its way back; shrink the initial weights"))
    return conditions


def gradient_conditions(layers, t) -> list:
    """Every gradient warning of a step: parameters over the norm limit, then the chain products."""
    return exploding_conditions(layers, t) + chain_conditions(layers, t)


def _dead_above(layers, t) -> dict:
    """{layer: whether a ReLU layer between it and the loss has dead units over the threshold}."""
    out, seen = {}, False
    for layer in reversed(layers):
        out[layer.name] = seen
        seen = seen or dead(layer.dead_fraction, t)
    return out
