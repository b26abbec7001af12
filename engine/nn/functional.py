"""Losses and activations as functions, with PyTorch's names; losses average over the batch.

The formulas are the article's: MSE = (1/n)Σ(y - ŷ)², cross-entropy = -(1/n)Σ log p(correct class),
binary cross-entropy = -(1/n)Σ[y log ŷ + (1 - y) log(1 - ŷ)]. Each op a loss runs is named
after its part of the formula (tracing.name), so that stepping into an iteration shows
'(ŷ − y)²' and 'MSE = mean of (ŷ − y)²' rather than an anonymous 'mul' and 'mean'.
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import composites
from ..tracing import name as _name
from ..ops import ACTIVATION_OPS, LINEAR
from ..tensor import Tensor, _apply, _lift


_TINY = float(np.exp(-100.0))


def _tensor(x, like=None) -> Tensor:
    return _lift(x, like)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def _reduced(values: Tensor, reduction: str, loss: str, term: str) -> Tensor:
    """`_reduce`, its op named after the loss's formula ('MSE = mean of (ŷ − y)²')."""
    out = _reduce(values, reduction)
    if reduction == "none":
        return out
    return _name(out, f"{loss} = {'mean of' if reduction == 'mean' else 'Σ'} {term}")


def _same_shape(name: str, input: Tensor, target: Tensor) -> None:
    # Broadcasting (n, 1) against (n,) would silently compare every prediction with every target.
    if input.shape != target.shape:
        hint = ""
        if input.ndim == 2 and input.shape[1] == 1 and target.shape == input.shape[:1]:
            hint = "; reshape the target with y.reshape(-1, 1)"
        elif target.ndim == 2 and target.shape[1] == 1 and input.shape == target.shape[:1]:
            hint = "; reshape the prediction with pred.reshape(-1, 1)"
        raise ValueError(
            f"{name}: prediction shape {input.shape} and target shape {target.shape} differ{hint}"
        )


def _one_hot(name: str, input: Tensor, target) -> np.ndarray:
    """Integer class labels as one-hot rows yᵢ (batch, classes), after checking them."""
    labels = target.data if isinstance(target, Tensor) else np.asarray(target)
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError(f"{name}: targets must be integer class labels, got non-integer values")
    if input.ndim != 2 or labels.shape != input.shape[:1]:
        raise ValueError(
            f"{name}: expects scores of shape (batch, classes) and labels of shape (batch,), "
            f"got {input.shape} and {labels.shape}"
        )
    labels = labels.astype(np.intp, copy=False)
    classes = input.shape[1]
    onehot = np.zeros(input.shape, dtype=input.dtype)
    try:
        if labels.size and labels.min() < 0:
            raise IndexError
        onehot[np.arange(labels.shape[0]), labels] = 1.0
    except IndexError:
        raise ValueError(f"{name}: labels must lie in 0..{classes - 1}, "
                         f"got {labels.min()}..{labels.max()}") from None
    return onehot


def _negative_log_likelihood(log_p: Tensor, onehot: np.ndarray, reduction: str, loss: str = "NLL") -> Tensor:
    """−(1/n) Σᵢ yᵢ·log pᵢ, with yᵢ one-hot: the log-probability of each correct class."""
    picked = _name(log_p * onehot, "y·log p (y one-hot)")
    if reduction == "none":
        return _name(-_name(picked.sum(axis=1), "Σ_class y·log p"), f"{loss} = −Σ_class y·log p")
    if reduction == "sum":
        return _name(-_name(picked.sum(), "Σ y·log p"), f"{loss} = −Σ y·log p")
    if reduction == "mean":
        return _name(_name(picked.sum(), "Σ y·log p") * (-1.0 / log_p.shape[0]), f"{loss} = −(1/n) Σ y·log p")
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    input = _tensor(input)
    target = _tensor(target, input)
    _same_shape("mse_loss", input, target)
    diff = _name(input - target, "ŷ − y")
    return _reduced(_name(diff * diff, "(ŷ − y)²"), reduction, "MSE", "(ŷ − y)²")


def binary_cross_entropy(input, target, reduction: str = "mean") -> Tensor:
    """Inputs are probabilities; each log is clamped at -100 as PyTorch does, so p = 0 stays finite."""
    input = _tensor(input)
    target = _tensor(target, input)
    _same_shape("binary_cross_entropy", input, target)
    # Clamping p before the log (at e^-100) keeps both the loss and its gradient finite.
    log_p = _name(_name(input.clip(_TINY, None), "ŷ, at least e⁻¹⁰⁰").log(), "log ŷ")
    q = _name(_name(1.0 - input, "1 − ŷ").clip(_TINY, None), "1 − ŷ, at least e⁻¹⁰⁰")
    log_q = _name(q.log(), "log(1 − ŷ)")
    ones = _name(target * log_p, "y·log ŷ")
    zeros = _name(_name(1.0 - target, "1 − y") * log_q, "(1 − y)·log(1 − ŷ)")
    both = _name(ones + zeros, "y·log ŷ + (1 − y)·log(1 − ŷ)")
    term = "−[y·log ŷ + (1 − y)·log(1 − ŷ)]"
    return _reduced(_name(-both, term), reduction, "BCE", term)


def binary_cross_entropy_with_logits(input, target, reduction: str = "mean") -> Tensor:
    """BCE on logits z: softplus(z) - y*z, which is finite for any z."""
    input = _tensor(input)
    target = _tensor(target, input)
    _same_shape("binary_cross_entropy_with_logits", input, target)
    term = "softplus(z) − y·z"
    per_point = _name(composites.softplus(input) - _name(target * input, "y·z"), term)
    return _reduced(per_point, reduction, "BCE", term)


def nll_loss(input, target, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer labels, given log-probabilities of shape (batch, classes)."""
    input = _tensor(input)
    return _negative_log_likelihood(input, _one_hot("nll_loss", input, target), reduction)


def cross_entropy(input, target, reduction: str = "mean") -> Tensor:
    """Cross-entropy of integer labels, given logits of shape (batch, classes), via log_softmax."""
    input = _tensor(input)
    onehot = _one_hot("cross_entropy", input, target)
    return _negative_log_likelihood(composites.log_softmax(input, axis=1), onehot, reduction, "CE")


def softmax(input, dim: int = -1) -> Tensor:
    return composites.softmax(_tensor(input), axis=dim)


def log_softmax(input, dim: int = -1) -> Tensor:
    return composites.log_softmax(_tensor(input), axis=dim)


def logsumexp(input, dim: int = -1, keepdim: bool = False) -> Tensor:
    return composites.logsumexp(_tensor(input), axis=dim, keepdims=keepdim)


def _activation(op):
    """The activation op `op` of the derivative table as a function: relu(input),
    leaky_relu(input, negative_slope=0.01), ...: its parameters, with their defaults, follow the input."""
    params = op.activation.params
    signature = inspect.Signature(
        [inspect.Parameter("input", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
           for name, default in params])
    if params:
        def function(input, *args, **kwargs) -> Tensor:
            try:
                bound = signature.bind(input, *args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{op.name}(): {error}") from None
            bound.apply_defaults()
            return _apply(op, _tensor(input), attrs=tuple(bound.arguments[name] for name, _ in params))
    else:
        def function(input) -> Tensor:
            return _apply(op, _tensor(input))
    function.__name__ = function.__qualname__ = op.name
    function.__signature__ = signature
    function.__doc__ = f"{op.name} entry by entry; {op.formulas[0]}."
    return function


# relu, leaky_relu, sigmoid, tanh, ...: one function per activation of the derivative table.
globals().update({op.name: _activation(op) for op in ACTIVATION_OPS})


def softplus(input) -> Tensor:
    return composites.softplus(_tensor(input))


def linear(input, weight, bias=None) -> Tensor:
    """x Wᵀ + b, one op (as a Linear layer computes it)."""
    x = _tensor(input, weight)
    if bias is None:
        return x @ weight.T
    return _apply(LINEAR, x, weight, bias)


def __getattr__(name: str):
    # only reached for names this module does not define: say when it is a PyTorch name, and what to use
    from ..missing import FUNCTIONAL, TORCH, missing_name
    table = {**{k: v for k, v in TORCH.items() if k in ("sigmoid", "tanh", "relu")}, **FUNCTIONAL}
    raise missing_name("calcml.nn.functional", "torch.nn.functional", name, table)
