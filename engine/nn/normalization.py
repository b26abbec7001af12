"""LayerNorm, BatchNorm1d, BatchNorm2d and Embedding with PyTorch's names, defaults and numbers, built from the
derivative table's primitives (mean, mul, sqrt, getitem): their gradients are those ops' rules.

The variance is the mean of squared deviations (biased, as both layers normalise with it);
BatchNorm1d's running variance is the unbiased one, n/(n − 1) times it, as PyTorch keeps.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, _lift, _wrap, where
from ..tracing import name as _name
from . import init
from .module import Module, Parameter


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """F.layer_norm: each sample normalised over its last dimensions (normalized_shape),
    (x − mean)/√(var + eps), then × weight and + bias (each of normalized_shape, or None)."""
    x = _lift(input, weight if isinstance(weight, Tensor) else None)
    shape = (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(int(n) for n in normalized_shape)
    k = len(shape)
    if x.ndim < k or x.shape[x.ndim - k:] != shape:
        raise ValueError(f"layer_norm: normalised shape {shape} must be the input's last "
                         f"dimensions; the input has shape {x.shape}")
    for what, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(np.shape(t)) != shape:
            raise ValueError(f"layer_norm: {what} has shape {tuple(np.shape(t))}, expected {shape}")
    axes = tuple(range(x.ndim - k, x.ndim))
    centred = _name(x - x.mean(axis=axes, keepdims=True), "x − mean")
    var = _name(_name(centred * centred, "(x − mean)²").mean(axis=axes, keepdims=True), "var = mean (x − mean)²")
    out = _name(centred / (var + eps).sqrt(), "(x − mean)/√(var + ε)")
    if weight is not None:
        out = _name(out * weight, "× γ (weight)")
    if bias is not None:
        out = _name(out + bias, "+ β (bias)")
    return out


def _stat(t):
    """A running statistic's array (a buffer Tensor or an array), written in place."""
    return t.data if isinstance(t, Tensor) else t


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """F.batch_norm: each feature (dimension 1) normalised over every other dimension. With
    training=True by the batch's statistics, and running_mean/running_var (if given) updated in
    place, (1 − momentum)·old + momentum·new, the variance unbiased as PyTorch keeps it; with
    training=False by the running statistics."""
    x = _lift(input, weight if isinstance(weight, Tensor) else None)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expects an input of shape (N, C, ...), got {x.shape}")
    features = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))   # every axis but the features'
    shape = (1, features) + (1,) * (x.ndim - 2)
    if training:
        n = x.size // max(features, 1)
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per feature when training, "
                             f"got input of shape {x.shape}")
        centred = _name(x - x.mean(axis=axes, keepdims=True), "x − batch mean")
        var = _name(_name(centred * centred, "(x − batch mean)²").mean(axis=axes, keepdims=True), "batch var")
        out = _name(centred / (var + eps).sqrt(), "(x − mean)/√(var + ε)")
        if running_mean is not None:
            mean = _stat(running_mean)
            mean[...] = (1 - momentum) * mean + momentum * x.data.mean(axis=axes)
        if running_var is not None:
            stat = _stat(running_var)
            stat[...] = (1 - momentum) * stat + momentum * (var.data.reshape(-1) * (n / (n - 1)))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
        mean = _stat(running_mean).reshape(shape)
        std = np.sqrt(_stat(running_var).reshape(shape) + eps)
        out = _name((x - mean) / std, "(x − running mean)/√(running var + ε)")
    if weight is not None:
        out = _name(out * weight.reshape(*shape), "× γ (weight)")
    if bias is not None:
        out = _name(out + bias.reshape(*shape), "+ β (bias)")
    return out


def _padding_index(padding_idx, num_embeddings: int, what: str):
    """padding_idx within 0..num_embeddings − 1 (a negative one counts from the end, as PyTorch)."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{what}: padding_idx {padding_idx} must lie within num_embeddings ({num_embeddings})")
    return padding_idx % num_embeddings


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """F.embedding: row i of `weight` for each integer index i; the row at padding_idx receives
    no gradient. `sparse` changes only the gradient's storage in PyTorch: here it is dense, with
    the same values. max_norm and scale_grad_by_freq are not supported."""
    if max_norm is not None:
        raise NotImplementedError("embedding: max_norm (renormalising rows in place) is not supported")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq is not supported")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise ValueError(f"embedding: weight must be a 2-D tensor (num_embeddings, embedding_dim), "
                         f"got {type(weight).__name__} of shape {np.shape(weight)}")
    num_embeddings = weight.shape[0]
    padding_idx = _padding_index(padding_idx, num_embeddings, "embedding")
    labels = input.data if isinstance(input, Tensor) else np.asarray(input)
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError("embedding: indices must be integers, got non-integer values")
    labels = labels.astype(np.intp)
    if labels.size and (labels.min() < 0 or labels.max() >= num_embeddings):
        raise IndexError(f"embedding: indices must lie in 0..{num_embeddings - 1}, "
                         f"got {labels.min()}..{labels.max()}")
    rows = _name(weight[labels], "W[indices]: the rows picked")
    if padding_idx is None or not np.any(labels == padding_idx):
        return rows
    # the padding row's value, as a constant: no gradient reaches it
    keep = np.broadcast_to((labels != padding_idx)[..., None], rows.shape)
    return where(keep, rows, weight.detach()[labels])


class LayerNorm(Module):
    """Each sample normalised over its last dimensions (normalized_shape): (x − mean)/√(var + eps),
    then scaled and shifted per entry by `weight` (1s) and `bias` (0s)."""
    # what the layer multiplies the gradient by (the inspector's chain-rule panel)
    factor_note = "normalises by each sample's σ: ×γ/σ, minus the mean's share"

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 dtype=np.float64):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype))
            self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dtype)) if bias else None
        else:
            self.weight = None
            self.bias = None

    def forward(self, x):
        try:
            return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        except ValueError as error:
            raise ValueError(f"LayerNorm: {str(error).removeprefix('layer_norm: ')}") from None

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class BatchNorm1d(Module):
    """Each feature (dimension 1 of (N, C) or (N, C, L)) normalised over the batch while training,
    and over the running statistics (buffers, updated with `momentum`) in eval mode."""
    factor_note = "normalises by the batch's σ: ×γ/σ, minus the mean's share"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=np.float64):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.weight = None
            self.bias = None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype=dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype=dtype)))
            # an integer count, as PyTorch's (so that its state_dict loads either way)
            self.register_buffer("num_batches_tracked", _wrap(np.array(0, dtype=np.int64)))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0.0
            self.running_var.data[...] = 1.0
            self.num_batches_tracked.data[...] = 0

    def forward(self, x):
        x = _lift(x, None)
        self._check_input(x)
        batch_stats = self.training or not self.track_running_stats
        momentum = 0.0
        if self.training and self.track_running_stats:
            if x.size // self.num_features <= 1:   # refused before the count moves
                raise ValueError(f"{type(self).__name__}: expected more than 1 value per feature when training, "
                                 f"got input of shape {x.shape}")
            self.num_batches_tracked.data += 1
            # None: a cumulative average of every batch so far (PyTorch's meaning)
            momentum = 1.0 / float(self.num_batches_tracked.data) if self.momentum is None else self.momentum
        # the running statistics are read in eval mode and updated while training, if tracked
        tracked = not self.training or self.track_running_stats
        try:
            return batch_norm(x, self.running_mean if tracked else None, self.running_var if tracked else None,
                              self.weight, self.bias, batch_stats, momentum, self.eps)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {str(error).removeprefix('batch_norm: ')}") from None

    def _check_input(self, x) -> None:
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}): expects inputs of shape (N, {self.num_features}) "
                             f"or (N, {self.num_features}, L), got {x.shape}")

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm2d(BatchNorm1d):
    """Each channel of an image batch (N, C, H, W) normalised over N, H and W while training, and
    over the running statistics in eval mode: BatchNorm1d's arithmetic per channel."""

    def _check_input(self, x) -> None:
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}): expects inputs of shape "
                             f"(N, {self.num_features}, H, W), got {x.shape}")


class Embedding(Module):
    """Row `i` of `weight` (num_embeddings, embedding_dim) for each integer index i, weights drawn
    from N(0, 1); the row at padding_idx starts at 0 and receives no gradient."""
    factor_note = "rows picked by the indices: the gradient goes to those rows"

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, dtype=np.float64):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        padding_idx = _padding_index(padding_idx, num_embeddings, "Embedding")
        self.padding_idx = padding_idx
        self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype=dtype))
        init.normal_(self.weight)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0.0

    def forward(self, indices):
        try:
            return embedding(indices, self.weight, self.padding_idx)
        except (ValueError, IndexError) as error:
            raise type(error)(f"Embedding: {str(error).removeprefix('embedding: ')}") from None

    def extra_repr(self) -> str:
        extra = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{extra}"
