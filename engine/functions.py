"""PyTorch's top-level tensor functions (`cm.exp(x)`, `cm.sum(x, dim)`, `cm.max(x, dim)`, ...), with
torch's signatures: each is the Tensor method or the composite of the same name, so there is one
implementation. (Kept apart from composites.py because `sum`, `max`, `min` and `abs` here shadow
the builtins.)"""
from __future__ import annotations

import numpy as np

from . import composites
from .composites import cat, concat, concatenate, stack  # noqa: F401 (the namespace's)
from .tensor import Tensor, _raw, _wrap


def _t(x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a calcml Tensor, got {type(x).__name__}")
    return x


def exp(input):
    return _t(input).exp()


def log(input):
    return _t(input).log()


def log10(input):
    return _t(input).log10()


def sqrt(input):
    return _t(input).sqrt()


def abs(input):  # noqa: A001 (torch.abs)
    return _t(input).abs()


def round(input, *, decimals: int = 0):  # noqa: A001 (torch.round)
    return _t(input).round(decimals)


def tanh(input):
    return _t(input).tanh()


def sigmoid(input):
    return _t(input).sigmoid()


def relu(input):
    return _t(input).relu()


def sin(input):
    return _t(input).sin()


def cos(input):
    return _t(input).cos()


def matmul(input, other):
    return _t(input) @ other


def mm(input, mat2):
    return _t(input).mm(mat2)


def sum(input, dim=None, keepdim: bool = False):  # noqa: A001
    return _t(input).sum(dim, keepdim)


def mean(input, dim=None, keepdim: bool = False):
    return _t(input).mean(dim, keepdim)


def max(input, dim=None, keepdim: bool = False):  # noqa: A001
    return _t(input).max(dim, keepdim)


def min(input, dim=None, keepdim: bool = False):  # noqa: A001
    return _t(input).min(dim, keepdim)


def argmax(input, dim=None, keepdim: bool = False):
    return _t(input).argmax(dim, keepdim)


def argmin(input, dim=None, keepdim: bool = False):
    return _t(input).argmin(dim, keepdim)


def clamp(input, min=None, max=None):  # noqa: A002
    return _t(input).clip(min, max)


clip = clamp


def var(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    return _t(input).var(dim, unbiased, keepdim, correction=correction)


def std(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    return _t(input).std(dim, unbiased, keepdim, correction=correction)


_UNSET = object()


def softmax(input, dim=-1, *, axis=_UNSET):
    """Along dim (torch's name), the last by default; numpy's axis= too (axis=None: all elements)."""
    return composites.softmax(_t(input), axis=dim if axis is _UNSET else axis)


def log_softmax(input, dim=-1, *, axis=_UNSET):
    return composites.log_softmax(_t(input), axis=dim if axis is _UNSET else axis)


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    return composites.flatten(_t(input), start_dim, end_dim)


def squeeze(input, dim=None):
    return _t(input).squeeze(dim)


def unsqueeze(input, dim: int):
    return _t(input).unsqueeze(dim)


def reshape(input, shape):
    return _t(input).reshape(shape)


def transpose(input, dim0: int, dim1: int):
    return _t(input).transpose(dim0, dim1)


def permute(input, dims):
    return _t(input).permute(dims)


def gather(input, dim: int, index):
    return composites.gather(_t(input), dim, index)


def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
    return composites.topk(_t(input), k, dim, largest, sorted)


def sort(input, dim: int = -1, descending: bool = False, stable: bool = False):
    return composites.sort(_t(input), dim, descending, stable)


def split(tensor, split_size_or_sections, dim: int = 0):
    return composites.split(_t(tensor), split_size_or_sections, dim)


def chunk(input, chunks: int, dim: int = 0):
    return composites.chunk(_t(input), chunks, dim)


def numel(input) -> int:
    return _t(input).numel()


def allclose(input, other, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    return bool(np.allclose(_raw(input), _raw(other), rtol=rtol, atol=atol, equal_nan=equal_nan))


def equal(input, other) -> bool:
    return _t(input).equal(other)


def multinomial(input, num_samples: int, replacement: bool = False, *, generator=None) -> Tensor:
    """Indices drawn in proportion to the weights of each row (torch.multinomial), int64, no gradient.
    Drawn from calcml's generator (or generator=): the same seed repeats calcml's draws, not PyTorch's."""
    from .creation import _rng
    p = np.asarray(_raw(input), dtype=np.float64)
    if p.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: the weights must be 1-D or 2-D, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise RuntimeError("multinomial: the weights must be finite and non-negative")
    rows = p.reshape(-1, p.shape[-1])
    nonzero = (rows > 0).sum(axis=1)
    if np.any(nonzero == 0):
        raise RuntimeError("multinomial: a row of weights sums to 0")
    if not replacement and num_samples > nonzero.min():
        raise RuntimeError(f"multinomial: cannot draw {num_samples} samples without replacement from "
                           f"{int(nonzero.min())} categories of non-zero weight")
    rng = _rng(generator)
    draws = np.stack([rng.choice(len(r), size=num_samples, replace=replacement, p=r / r.sum()) for r in rows])
    return _wrap(draws.reshape(p.shape[:-1] + (num_samples,)).astype(np.int64))
