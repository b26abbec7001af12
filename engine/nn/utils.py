"""Gradient clipping with PyTorch's names (torch.nn.utils.clip_grad_norm_, clip_grad_value_)."""
from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor


def _grads(parameters) -> list:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    """Scale every gradient by min(1, max_norm / (‖g‖ + 1e-6)), ‖g‖ the norm of all the gradients
    together (as one vector), in place; returns that total norm, taken before clipping."""
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return Tensor(0.0)
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g.data))) if g.data.size else 0.0 for g in grads)
    else:
        # the norm of the per-parameter norms is the norm of everything at once (PyTorch's way)
        norms = np.array([np.sum(np.abs(g.data.astype(np.float64)) ** norm_type) ** (1.0 / norm_type)
                          for g in grads])
        total = float(np.sum(norms ** norm_type) ** (1.0 / norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
                           f"{total}; pass error_if_nonfinite=False to clip anyway")
    coef = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g.data *= g.data.dtype.type(coef)
    return Tensor(total, dtype=grads[0].data.dtype)


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient entry into [−clip_value, clip_value], in place."""
    for g in _grads(parameters):
        np.clip(g.data, -clip_value, clip_value, out=g.data)
