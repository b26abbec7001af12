"""Ops built from the primitives in `ops.py`, in their numerically stable forms.

Their gradients come from the primitives' rules: nothing here has a backward of its own. Each
op is named after its part of the formula (tracing.name: 'z − max z', 'log Σ e^(z − max z)'),
which is what stepping into an iteration shows for it.
"""
from __future__ import annotations

import numpy as np

from . import ops
from .tensor import Tensor, _apply, _lift
from .tracing import name as _name


def _shift(x: Tensor, axis):
    """The max along `axis` (0 where it is not finite), a constant: no gradient flows through it."""
    shift = x.data.max(axis=axis, keepdims=True)
    if not np.isfinite(shift).all():  # rows of -inf (or inf): shifting by them would give NaN
        shift = np.where(np.isfinite(shift), shift, 0.0).astype(x.dtype)
    return shift


def logsumexp(x: Tensor, axis=-1, keepdims: bool = False) -> Tensor:
    """log Σ exp(x), shifted by the max so that exp never overflows."""
    # The shift is a constant: logsumexp is unchanged by it, so no gradient flows through it.
    shift = _shift(x, axis)
    result = _name(_log_sum_exp(_name(x - shift, "z − max z"), axis) + shift, "logsumexp(z)")
    if not keepdims:
        result = result.reshape(np.squeeze(result.data, axis=axis).shape)
    return result


def log_softmax(x: Tensor, axis=-1) -> Tensor:
    """x - logsumexp(x): log-probabilities that stay finite for logits of any size.

    Computed as (x - m) - log Σ exp(x - m), m the max: subtracting the large m + log Σ from x
    instead would round log-probabilities to the precision of |m| (1e-4 relative in float32
    for logits near 1e4).
    """
    shifted = _name(x - _shift(x, axis), "z − max z")
    return _name(shifted - _log_sum_exp(shifted, axis), "log softmax(z)")


def _log_sum_exp(shifted: Tensor, axis) -> Tensor:
    exp = _name(shifted.exp(), "e^(z − max z)")
    return _name(_name(exp.sum(axis=axis, keepdims=True), "Σ e^(z − max z)").log(), "log Σ e^(z − max z)")


def softmax(x: Tensor, axis=-1) -> Tensor:
    return _name(log_softmax(x, axis=axis).exp(), "softmax(z)")


def softplus(x: Tensor) -> Tensor:
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), with max(x, 0) written (x + |x|)/2.

    That form never overflows, and its derivative is exactly sigmoid(x), 1/2 at x = 0 included.
    |x| is written x * s with the sign s a constant that is +1 at 0 (not abs, whose derivative
    sign(0) = 0 would make the second derivative 0 instead of 1/4 at x = 0): on each side the
    formula is an exact smooth identity for softplus, so derivatives of every order are right.
    """
    magnitude = _name(x * np.where(x.data >= 0, 1.0, -1.0).astype(x.dtype), "|z|")
    positive = _name(_name(x + magnitude, "z + |z|") * 0.5, "max(z, 0) = (z + |z|)/2")
    tail = _name(_name(_name(-magnitude, "−|z|").exp(), "e^−|z|").log1p(), "log(1 + e^−|z|)")
    return _name(positive + tail, "softplus(z) = max(z, 0) + log(1 + e^−|z|)")


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """The derivative table's leaky_relu op (one op in a trace, its own local derivative)."""
    return _apply(ops.LEAKY_RELU, _lift(x, None), attrs=(negative_slope,))
