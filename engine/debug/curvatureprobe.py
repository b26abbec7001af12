"""Curvature during training: the Hessian's top eigenvalue, its trace, and the learning-rate edge.

Every `curvature_every` steps the session builds the Hessian operator of this step's objective
(data loss + penalty, on this step's batch, at the weights the step starts from) and estimates:

  λ_max    the largest eigenvalue of H (Lanczos on exact Hessian-vector products)
  tr H     its trace (Hutchinson, with a standard error), and from the same products the
           diagonal Hᵢᵢ per parameter
  lr edge  where gradient descent stops being stable. On the quadratic model
           L(θ) ≈ L(θ₀) + gᵀ(θ−θ₀) + ½(θ−θ₀)ᵀH(θ−θ₀), one step θ ← θ − η·∇L multiplies the
           error along H's top eigenvector by (1 − η·λ_max); that factor's size exceeds 1, and
           the iterates grow, once η > 2/λ_max. With heavy-ball momentum β (PyTorch's SGD
           momentum) the edge moves out to 2(1+β)/λ_max; with dampening d the gradient is
           scaled by (1−d), so it is 2(1+β)/((1−d)·λ_max); with Nesterov momentum it is
           2(1+β)/((1+2β)·λ_max). Adaptive optimisers (Adam, RMSprop, Adagrad) rescale every
           coordinate, so no single edge applies to their lr: there is none for them, and
           their per-parameter step lr/(√v̂+ε) is shown beside Hᵢᵢ instead.

Nothing here is finite differences: the products are double backward through the engine.
"""
from __future__ import annotations

import math

import numpy as np

from .. import curvature as _curvature
from ..tensor import Tensor, enable_grad
from .snapshot import CurvatureStats


_NO_EDGE = {
    "Newton": "it solves with the Hessian itself",
    "HMC": "it samples rather than descends (its leapfrog steps stay stable while step·√λ_max < 2)",
}


def lr_edge(optimizer, lambda_max: float) -> tuple:
    """(edge, formula): the largest stable lr of this optimiser on a quadratic with top
    eigenvalue λ_max; (None, reason) when there is no single edge."""
    name = type(optimizer).__name__
    if not hasattr(optimizer, "param_groups") or name not in ("SGD",):
        return None, f"no single lr edge for {name}: " + _NO_EDGE.get(name, "it scales each coordinate's step itself")
    if not lambda_max > 0:
        return None, "λ_max ≤ 0: no positive curvature, so no edge"
    group = optimizer.param_groups[0]
    beta = float(group.get("momentum", 0.0))
    damp = float(group.get("dampening", 0.0))
    lam = lambda_max + float(group.get("weight_decay", 0.0))  # SGD's weight decay adds wd·I to H
    if beta == 0:
        return 2.0 / lam, "2/λ_max"
    if group.get("nesterov"):
        return 2.0 * (1 + beta) / ((1 + 2 * beta) * lam), f"2(1+β)/((1+2β)·λ_max), β = {beta:g} (Nesterov)"
    if damp:
        return 2.0 * (1 + beta) / ((1 - damp) * lam), f"2(1+β)/((1−d)·λ_max), β = {beta:g}, d = {damp:g}"
    return 2.0 * (1 + beta) / lam, f"2(1+β)/λ_max, β = {beta:g}"


def measure(objective, named_params: list, optimizer, step: int, iters: int = 20,
            samples: int = 10, seed: int = 0) -> CurvatureStats:
    """Estimate the curvature of `objective()` (a zero-argument function returning the scalar
    loss Tensor) with respect to `named_params` [(name, Parameter)]."""
    params = [p for _, p in named_params]
    with enable_grad():
        loss = objective()
    if not isinstance(loss, Tensor):
        raise TypeError(f"the objective returned {type(loss).__name__}, not a Tensor")
    op = _curvature.HessianOperator(loss, params)
    lam = float(_curvature.lanczos(op, k=1, iters=iters, tol=1e-6, seed=seed)[0])
    est = _curvature.hutchinson(op, samples=samples, seed=seed)
    edge, formula = lr_edge(optimizer, lam)
    diag = {name: float(d.mean()) if d.size else math.nan for (name, _), d in zip(named_params, est.diagonal)}
    return CurvatureStats(step=step, lambda_max=lam, trace=est.trace, trace_se=est.trace_se,
                          lr_edge=edge, edge_formula=formula, hessian_diag=diag, n_params=op.n)


def effective_lr(optimizer, p) -> float | None:
    """The median over a parameter's entries of the adaptive optimiser's per-entry step
    η/(√v̂+ε) (Adam, RMSprop) or η/(√s+ε) (Adagrad); None for optimisers without one."""
    fn = getattr(optimizer, "effective_lr", None)
    if fn is None:
        return None
    values = fn(p)
    if values is None:
        return None
    values = np.asarray(values)
    return float(np.median(values)) if values.size else None
