"""L1 and L2 regularisation, with the penalty's gradient available on its own.

L2 adds λΣθ² to the loss (gradient 2λθ: "weight decay", pulls every weight towards zero in
proportion to its size); L1 adds λΣ|θ| (gradient λ·sign θ: the same push for every weight, so
small ones reach exactly zero). By default only weights are penalised, not biases.

    penalty = reg(model)            # a Tensor: add it to the loss, or
    reg.add_to_grads(model)         # add the closed-form penalty gradient after loss.backward()
    reg.grads(model)                # {name: penalty gradient}, to show beside the data-loss gradient
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor


class Regularizer:
    """A penalty λ·Σ term(θ) over the selected parameters."""

    kind = "none"
    formula = ""

    def __init__(self, lam: float, include_bias: bool = False, select=None):
        if not lam >= 0:
            raise ValueError(f"the regularisation strength λ must be >= 0, got {lam}")
        self.lam = float(lam)
        self.include_bias = include_bias
        self.select = select  # optional callable(name, param) -> bool, overrides include_bias

    def applies_to(self, name: str, param) -> bool:
        if self.select is not None:
            return bool(self.select(name, param))
        return self.include_bias or not (name == "bias" or name.endswith(".bias"))

    def parameters(self, target):
        """(name, parameter) pairs this penalty covers, from a Module, a dict or a list."""
        if hasattr(target, "named_parameters"):
            pairs = target.named_parameters()
        elif isinstance(target, dict):
            pairs = target.items()
        else:
            pairs = ((p.name or str(i), p) for i, p in enumerate(target))
        return [(name, p) for name, p in pairs if self.applies_to(name, p)]

    # -- the penalty -------------------------------------------------------------------
    def term(self, p: Tensor) -> Tensor:
        raise NotImplementedError

    def gradient(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def penalty(self, target) -> Tensor:
        """λ·Σ term(θ) as a Tensor, so that it can be added to the loss and differentiated."""
        total = None
        for _, p in self.parameters(target):
            t = self.term(p)
            total = t if total is None else total + t
        if total is None:
            return Tensor(0.0)
        return total * self.lam

    __call__ = penalty

    def value(self, target) -> float:
        """The penalty as a number, computed straight from the arrays (no graph)."""
        return self.lam * sum(self.total(p.data) for _, p in self.parameters(target))

    def total(self, values: np.ndarray) -> float:
        """Σ term(θ) over one array."""
        raise NotImplementedError

    def grads(self, target) -> dict:
        """{name: d(penalty)/dθ} in closed form, for each covered parameter."""
        return {name: self.gradient(p.data) for name, p in self.parameters(target)}

    def add_to_grads(self, target) -> dict:
        """Add the penalty gradient to each covered parameter's `.grad`; return what was added."""
        added = self.grads(target)
        for name, p in self.parameters(target):
            g = added[name]
            p.grad = g.copy() if p.grad is None else p.grad.data + g
        return added

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lam:g})"


class L2(Regularizer):
    """λΣθ², gradient 2λθ."""

    kind = "L2"
    formula = "d(λΣθ²)/dθ = 2λθ"

    def term(self, p):
        return (p * p).sum()

    def total(self, values):
        flat = values.reshape(-1)
        return float(np.dot(flat, flat))

    def gradient(self, values):
        return (2.0 * self.lam) * values


class L1(Regularizer):
    """λΣ|θ|, gradient λ·sign(θ) (0 at θ = 0, the subgradient that leaves zeros alone)."""

    kind = "L1"
    formula = "d(λΣ|θ|)/dθ = λ·sign(θ)"

    def term(self, p):
        return p.abs().sum()

    def total(self, values):
        return float(np.abs(values).sum())

    def gradient(self, values):
        return self.lam * np.sign(values)
