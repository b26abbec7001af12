"""Ops built from the primitives in `ops.py`, in their numerically stable forms.

Their gradients come from the primitives' rules: nothing here has a backward of its own. Each
op is named after its part of the formula (tracing.name: 'z − max z', 'log Σ e^(z − max z)'),
which is what stepping into an iteration shows for it.
"""
from __future__ import annotations

import collections

import numpy as np

from . import ops
from .tensor import Tensor, _apply, _check_dim, _lift, _raw, _wrap
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


# -- PyTorch's shape, indexing and statistics functions, from the primitives --------------------

# What topk and sort return, as torch.return_types do: a tuple that also has names.
topk_result = collections.namedtuple("topk", ["values", "indices"])
sort_result = collections.namedtuple("sort", ["values", "indices"])


def _tensors(tensors, what: str) -> list:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{what}() expects a list or tuple of tensors, got {type(tensors).__name__}")
    if not tensors:
        raise RuntimeError(f"{what}() expects a non-empty list of tensors")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    return [_lift(t, like) for t in tensors]


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dim (torch.cat). Each piece is the scatter-add primitive
    placing it in zeros of the result's shape, and the pieces are added: the gradient each input
    receives is its slice of the upstream gradient."""
    tensors = _tensors(tensors, "cat")
    first = tensors[0]
    if first.ndim == 0:
        raise RuntimeError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    d = _check_dim(dim, first.ndim)
    for k, t in enumerate(tensors):
        if t.ndim != first.ndim or t.shape[:d] + t.shape[d + 1:] != first.shape[:d] + first.shape[d + 1:]:
            raise RuntimeError(f"cat: sizes of tensors must match except in dim {d}: tensor 0 has shape "
                               f"{first.shape}, tensor {k} has shape {t.shape}")
    shape = first.shape[:d] + (sum(t.shape[d] for t in tensors),) + first.shape[d + 1:]
    result, offset = None, 0
    for t in tensors:
        index = (slice(None),) * d + (slice(offset, offset + t.shape[d]),)
        offset += t.shape[d]
        piece = _apply(ops.SCATTER_ADD, t, attrs=(index, shape))
        result = piece if result is None else result + piece
    return _name(result, "cat")


concat = concatenate = cat


def stack(tensors, dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new dim (torch.stack)."""
    tensors = _tensors(tensors, "stack")
    for k, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {tensors[0].shape} at "
                               f"entry 0 and {t.shape} at entry {k}")
    d = _check_dim(dim, tensors[0].ndim + 1)
    return _name(cat([t.unsqueeze(d) for t in tensors], d), "stack")


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return x.reshape(1)
    start, end = _check_dim(start_dim, x.ndim), _check_dim(end_dim, x.ndim)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    return x.reshape(x.shape[:start] + (-1 if 0 not in x.shape else 0,) + x.shape[end + 1:])


def split(x: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Pieces along `dim`: of split_size each (the last may be smaller), or of the sizes listed."""
    d = _check_dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise RuntimeError(f"split: the sizes {sizes} must be non-negative and add up to {n}, the length "
                               f"of dim {d}")
    else:
        size = int(split_size_or_sections)
        if size <= 0:
            raise RuntimeError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - start) for start in range(0, n, size)] or [0]
    pieces, start = [], 0
    for s in sizes:
        pieces.append(x[(slice(None),) * d + (slice(start, start + s),)])
        start += s
    return tuple(pieces)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple:
    """At most `chunks` pieces of ceil(n / chunks) each, as torch.chunk (it can give fewer)."""
    if int(chunks) <= 0:
        raise RuntimeError(f"chunk expects chunks to be positive, got {chunks}")
    n = x.shape[_check_dim(dim, x.ndim)]
    return split(x, max(-(-n // int(chunks)), 1), dim)


def _index_grid(x: Tensor, dim: int, index, what: str):
    """The integer index tuple that picks x[..., index[...], ...] along `dim`, checked as PyTorch."""
    index = np.asarray(_raw(index))
    if index.dtype.kind not in "iu":
        if index.dtype.kind == "f" and index.size and np.all(index == np.round(index)):
            index = index.astype(np.int64)   # calcml's float tensors of whole numbers
        elif index.size:
            raise TypeError(f"{what}: index must hold integers, got {index.dtype}")
        else:
            index = index.astype(np.int64)
    d = _check_dim(dim, x.ndim)
    if index.ndim != max(x.ndim, 1):
        raise RuntimeError(f"{what}: index has {index.ndim} dims, the tensor {x.ndim}: they must be equal")
    if index.size and (index.min() < 0 or index.max() >= (x.shape[d] if x.ndim else 1)):
        raise RuntimeError(f"{what}: index out of range: dim {d} has size {x.shape[d] if x.ndim else 1}, "
                           f"the index holds values from {index.min()} to {index.max()}")
    grid = list(np.ogrid[tuple(slice(n) for n in index.shape)])
    grid[d] = index.astype(np.intp)
    return tuple(grid), index.shape


def gather(x: Tensor, dim: int, index) -> Tensor:
    """out[i][j] = x[i][index[i][j]] (dim=1), as torch.gather: an indexing op, the gradient added
    back at the picked places."""
    grid, shape = _index_grid(x, dim, index, "gather")
    for i, (m, n) in enumerate(zip(shape, x.shape)):
        if i != _check_dim(dim, x.ndim) and m > n:
            raise RuntimeError(f"gather: index {shape} is larger than the tensor {x.shape} in dim {i}")
    return _name(x[grid], "gather")


def scatter_add(x: Tensor, dim: int, index, src) -> Tensor:
    """x with src[i][j] added at [i][index[i][j]] (dim=1), repeated places adding up (torch's
    out-of-place scatter_add); the gradient to src is the upstream gradient gathered back."""
    src = _lift(src, x)
    grid, shape = _index_grid(x, dim, index, "scatter_add")
    if any(m > n for m, n in zip(shape, src.shape)):
        raise RuntimeError(f"scatter_add: index {shape} is larger than src {src.shape}")
    d = _check_dim(dim, x.ndim)
    if any(m > n for i, (m, n) in enumerate(zip(shape, x.shape)) if i != d):
        raise RuntimeError(f"scatter_add: index {shape} is larger than the tensor {x.shape} outside dim {d}")
    if src.shape != shape:
        src = src[tuple(slice(n) for n in shape)]
    return _name(x + _apply(ops.SCATTER_ADD, src, attrs=(grid, x.shape)), "scatter_add")


def _by_order(x: Tensor, order: np.ndarray, d: int):
    """(x's values in `order` along d, the order as int64): values by indexing, so the gradient
    goes back to the entries picked."""
    grid = list(np.ogrid[tuple(slice(n) for n in order.shape)])
    grid[d] = order
    return x[tuple(grid)], _wrap(order.astype(np.int64))


def sort(x: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """(values, indices) sorted along dim; ties keep their order (a stable sort, always)."""
    if x.ndim == 0:
        return sort_result(x, _wrap(np.asarray(0, dtype=np.int64)))
    d = _check_dim(dim, x.ndim)
    # descending: a stable sort of −x keeps equal entries in their original order, as PyTorch's
    order = np.argsort(-x.data if descending else x.data, axis=d, kind="stable")
    return sort_result(*_by_order(x, order, d))


def topk(x: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """The k largest (or smallest) entries along dim and their indices, largest first."""
    if x.ndim == 0:
        if k not in (0, 1):
            raise RuntimeError("topk: k out of range for a 0-dimensional tensor")
        return topk_result(x, _wrap(np.asarray(0, dtype=np.int64)))
    d = _check_dim(dim, x.ndim)
    if not 0 <= int(k) <= x.shape[d]:
        raise RuntimeError(f"topk: k ({k}) out of range: dim {d} has size {x.shape[d]}")
    order = np.argsort(-x.data if largest else x.data, axis=d, kind="stable")
    order = np.take(order, np.arange(int(k)), axis=d)
    return topk_result(*_by_order(x, order, d))


def var(x: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None,
        keepdims: bool = False) -> Tensor:
    """Σ (x − mean)² / (n − correction), as torch.var: correction 1 unless unbiased=False or
    correction= says otherwise; numpy's axis=/keepdims= name the same dims."""
    if isinstance(dim, bool):       # torch.var(x, False): the old unbiased overload
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError("var: give unbiased= or correction=, not both")
    c = correction if correction is not None else (0 if unbiased is False else 1)
    axis = dim if dim is not None else axis
    axis = tuple(axis) if isinstance(axis, list) else axis
    keep = keepdim or keepdims
    n = x.data.size if axis is None else int(np.prod([x.shape[a] for a in (axis if isinstance(axis, tuple) else (axis,))]))
    centred = _name(x - x.mean(axis=axis, keepdims=True), "x − mean")
    squares = _name((centred * centred).sum(axis=axis, keepdims=keep), "Σ (x − mean)²")
    with np.errstate(divide="ignore", invalid="ignore"):   # n ≤ correction: inf or NaN, as PyTorch
        return _name(squares / float(max(n - c, 0)), "var")

