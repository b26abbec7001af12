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
        x = _lift(x, None)
        k = len(self.normalized_shape)
        if x.shape[x.ndim - k:] != self.normalized_shape or x.ndim < k:
            raise ValueError(f"LayerNorm: normalised shape {self.normalized_shape} must be the input's last "
                             f"dimensions; the input has shape {x.shape}")
        axes = tuple(range(x.ndim - k, x.ndim))
        centred = _name(x - x.mean(axis=axes, keepdims=True), "x − mean")
        var = _name(_name(centred * centred, "(x − mean)²").mean(axis=axes, keepdims=True), "var = mean (x − mean)²")
        out = _name(centred / (var + self.eps).sqrt(), "(x − mean)/√(var + ε)")
        if self.weight is not None:
            out = _name(out * self.weight, "× γ (weight)")
        if self.bias is not None:
            out = _name(out + self.bias, "+ β (bias)")
        return out

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
        axes = (0,) + tuple(range(2, x.ndim))   # every axis but the features'
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        batch_stats = self.training or not self.track_running_stats
        if batch_stats:
            n = x.size // self.num_features
            if self.training and n <= 1:
                raise ValueError(f"{type(self).__name__}: expected more than 1 value per feature when training, "
                                 f"got input of shape {x.shape}")
            centred = _name(x - x.mean(axis=axes, keepdims=True), "x − batch mean")
            var = _name(_name(centred * centred, "(x − batch mean)²").mean(axis=axes, keepdims=True), "batch var")
            out = _name(centred / (var + self.eps).sqrt(), "(x − mean)/√(var + ε)")
            if self.training and self.track_running_stats:
                self.num_batches_tracked.data += 1
                # None: a cumulative average of every batch so far (PyTorch's meaning)
                m = 1.0 / float(self.num_batches_tracked.data) if self.momentum is None else self.momentum
                mean = x.data.mean(axis=axes)
                unbiased = var.data.reshape(-1) * (n / (n - 1))
                self.running_mean.data[...] = (1 - m) * self.running_mean.data + m * mean
                self.running_var.data[...] = (1 - m) * self.running_var.data + m * unbiased
        else:
            mean = self.running_mean.data.reshape(shape)
            std = np.sqrt(self.running_var.data.reshape(shape) + self.eps)
            out = _name((x - mean) / std, "(x − running mean)/√(running var + ε)")
        if self.affine:
            out = _name(_name(out * self.weight.reshape(*shape), "× γ (weight)") + self.bias.reshape(*shape),
                        "+ β (bias)")
        return out

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
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must lie within num_embeddings "
                                 f"({num_embeddings})")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.weight = Parameter(np.empty((num_embeddings, embedding_dim), dtype=dtype))
        init.normal_(self.weight)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0.0

    def forward(self, indices):
        labels = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise ValueError("Embedding: indices must be integers, got non-integer values")
        labels = labels.astype(np.intp)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_embeddings):
            raise IndexError(f"Embedding: indices must lie in 0..{self.num_embeddings - 1}, "
                             f"got {labels.min()}..{labels.max()}")
        rows = _name(self.weight[labels], "W[indices]: the rows picked")
        if self.padding_idx is None or not np.any(labels == self.padding_idx):
            return rows
        # the padding row's value, as a constant: no gradient reaches it
        keep = np.broadcast_to((labels != self.padding_idx)[..., None], rows.shape)
        return where(keep, rows, self.weight.detach()[labels])

    def extra_repr(self) -> str:
        extra = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{extra}"
