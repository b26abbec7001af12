"""Ops built from the primitives in `ops.py`, in their numerically stable forms.

Their gradients come from the primitives' rules: nothing here has a backward of its own.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, where


def logsumexp(x: Tensor, axis=-1, keepdims: bool = False) -> Tensor:
    """log Σ exp(x), shifted by the max so that exp never overflows."""
    # The shift is a constant: logsumexp is unchanged by it, so no gradient flows through it.
    shift = np.max(x.data, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    shifted = x - shift
    result = shifted.exp().sum(axis=axis, keepdims=True).log() + shift
    if not keepdims:
        result = result.reshape(np.squeeze(result.data, axis=axis).shape)
    return result


def log_softmax(x: Tensor, axis=-1) -> Tensor:
    """x - logsumexp(x): log-probabilities that stay finite for logits of any size."""
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x: Tensor, axis=-1) -> Tensor:
    return log_softmax(x, axis=axis).exp()


def softplus(x: Tensor) -> Tensor:
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), with max(x, 0) written (x + |x|)/2.

    That form never overflows, and its derivative is exactly sigmoid(x), 1/2 at x = 0 included.
    """
    magnitude = x.abs()
    return (x + magnitude) * 0.5 + (-magnitude).exp().log1p()


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return where(x.data > 0, x, x * negative_slope)
