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
from .. import random as _random
from ..tracing import name as _name
from ..ops import ACTIVATION_OPS, LINEAR
from ..tensor import Tensor, _apply, _lift, _wrap, where


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
_exact_gelu = globals()["gelu"]

_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


def _tanh_gelu(x: Tensor) -> Tensor:
    """PyTorch's tanh approximation ½z(1 + tanh(√(2/π)(z + 0.044715z³))), from the tensor's own
    ops (mul, pow, tanh), so its gradient is theirs."""
    inner = _name((x + x.pow(3) * 0.044715) * _SQRT_2_OVER_PI, "√(2/π)(z + 0.044715z³)")
    return _name(x * 0.5 * (inner.tanh() + 1.0), "½z(1 + tanh(√(2/π)(z + 0.044715z³)))")


def gelu(input, approximate: str = "none") -> Tensor:
    """z·Φ(z) entry by entry (the derivative table's gelu op); approximate='tanh' is PyTorch's
    tanh approximation, ½z(1 + tanh(√(2/π)(z + 0.044715z³)))."""
    if approximate == "none":
        return _exact_gelu(input)
    if approximate == "tanh":
        return _tanh_gelu(_tensor(input))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + e^(βz))/β, and z itself where βz > threshold, as PyTorch's (the composite's
    stable form: its derivative is σ(βz), and 1 above the threshold)."""
    x = _tensor(input)
    if beta == 1.0:
        soft = composites.softplus(x)
        scaled = x
    else:
        scaled = _name(x * beta, "βz")
        soft = _name(composites.softplus(scaled) * (1.0 / beta), "softplus(βz)/β")
    if not np.any(scaled.data > threshold):
        return soft
    return _name(where(scaled.data > threshold, x, soft), "softplus(z), z above the threshold")


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Each entry zeroed with probability p, the rest scaled by 1/(1 − p), while `training`; else
    the input itself. The mask is a constant of the graph, drawn from calcml's generator
    (cm.manual_seed), so the gradient is zeroed and scaled in the same places."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p is a probability between 0 and 1, got {p}")
    x = _tensor(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:   # every entry dropped (1/(1 − p) would be 1/0)
        return _name(x * np.zeros(x.shape, dtype=x.dtype), "dropout: all dropped")
    keep = _random.generator().random(x.shape) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return _name(x * mask, f"dropout(p={p}): kept × 1/(1 − p)")


def l1_loss(input, target, reduction: str = "mean") -> Tensor:
    """|ŷ − y|, averaged (or summed) over every entry; its gradient is sign(ŷ − y) (0 at 0, as PyTorch)."""
    input = _tensor(input)
    target = _tensor(target, input)
    _same_shape("l1_loss", input, target)
    diff = _name(input - target, "ŷ − y")
    return _reduced(_name(diff.abs(), "|ŷ − y|"), reduction, "L1", "|ŷ − y|")


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """½(ŷ − y)² where |ŷ − y| < δ, else δ(|ŷ − y| − ½δ): quadratic near the target, linear far
    from it, so outliers pull with at most δ."""
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    input = _tensor(input)
    target = _tensor(target, input)
    _same_shape("huber_loss", input, target)
    diff = _name(input - target, "ŷ − y")
    size = _name(diff.abs(), "|ŷ − y|")
    near = _name(diff * diff * 0.5, "½(ŷ − y)²")
    far = _name((size - 0.5 * delta) * delta, "δ(|ŷ − y| − ½δ)")
    term = "½(ŷ − y)² or δ(|ŷ − y| − ½δ)"
    return _reduced(_name(where(size.data < delta, near, far), term), reduction, "Huber", term)


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """Integer labels of any shape as one-hot vectors along a new last dimension.

    An int64 tensor of 0s and 1s, as PyTorch's (`.float()` makes a target of it; multiplied with
    float log-probabilities it promotes). With num_classes=-1 the number of classes is the largest
    label + 1."""
    labels = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError("one_hot: labels must be integers, got non-integer values")
    if labels.dtype.kind not in "iuf":
        raise TypeError(f"one_hot: labels must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"one_hot: labels must be ≥ 0, got {labels.min()}")
    if num_classes == -1:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"one_hot: label {labels.max()} is out of range for num_classes={num_classes}")
    return _wrap(np.eye(num_classes, dtype=np.int64)[labels.reshape(-1)].reshape(*labels.shape, num_classes))


def linear(input, weight, bias=None) -> Tensor:
    """x Wᵀ + b, one op (as a Linear layer computes it)."""
    x = _tensor(input, weight)
    if bias is None:
        return x @ weight.T
    return _apply(LINEAR, x, weight, bias)


def pad(input, pad, mode: str = "constant", value=None) -> Tensor:
    """Constant padding of the last dims, PyTorch's order: `pad` is (left, right) of the last dim,
    then (top, bottom) of the one before, ...; a negative amount crops. The added entries are
    `value` (0 when None), constants of the graph: the gradient reaches the input's own entries."""
    if mode != "constant":
        raise NotImplementedError(f"pad: only mode='constant' is supported, not {mode!r}")
    x = _tensor(input)
    amounts = tuple(pad)
    if len(amounts) % 2 or len(amounts) // 2 > x.ndim:
        raise ValueError(f"pad: expects an even number of amounts, two per dim for at most {x.ndim} dims "
                         f"(last dim first), got {len(amounts)}")
    if not all(isinstance(a, (int, np.integer)) for a in amounts):
        raise TypeError(f"pad: amounts must be integers, got {amounts}")
    fill = 0.0 if value is None else float(value)
    out = x
    for k in range(len(amounts) // 2):
        dim = x.ndim - 1 - k
        before, after = int(amounts[2 * k]), int(amounts[2 * k + 1])
        size = out.shape[dim]
        if size + min(before, 0) + min(after, 0) < 0:
            raise ValueError(f"pad: cropping {-min(before, 0)} and {-min(after, 0)} from dim {dim} "
                             f"of size {size} leaves a negative size")
        if before < 0 or after < 0:   # crop first (a slice: its gradient is the slice's)
            index = (slice(None),) * dim + (slice(max(-before, 0), size - max(-after, 0)),)
            out = out[index]
        pieces = []
        for amount in (before, None, after):
            if amount is None:
                pieces.append(out)
            elif amount > 0:
                shape = out.shape[:dim] + (amount,) + out.shape[dim + 1:]
                pieces.append(Tensor(np.full(shape, fill, dtype=out.dtype)))
        if len(pieces) > 1:
            out = composites.cat(pieces, dim)
    return out if out is x else _name(out, f"pad{amounts}")


# Normalisation and embedding (nn/normalization.py): the layers' own functions.
from .normalization import batch_norm, embedding, layer_norm  # noqa: E402,F401

# Convolution and pooling (nn/conv.py): the layers' own functions.
from .conv import adaptive_avg_pool2d, avg_pool2d, conv1d, conv2d, max_pool2d  # noqa: E402,F401


def __getattr__(name: str):
    # only reached for names this module does not define: say when it is a PyTorch name, and what to use
    from ..missing import FUNCTIONAL, TORCH, missing_name
    table = {**{k: v for k, v in TORCH.items() if k in ("sigmoid", "tanh", "relu")}, **FUNCTIONAL}
    raise missing_name("calcml.nn.functional", "torch.nn.functional", name, table)
