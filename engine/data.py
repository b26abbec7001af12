"""Toy datasets and a mini-batch loader, all numpy and all reproducible from a seed.

Every dataset returns `(X, y)` with X float64 of shape (n, features). Classification sets give
integer labels y of shape (n,) and dtype int64; for a sigmoid + BCE model use
`y.reshape(-1, 1).astype(float)`. Regression sets give y float64 of shape (n, 1).

    import calcml as cm
    X, y = cm.data.moons(n=200, noise=0.1, seed=0)
    for xb, yb in cm.data.DataLoader((X, y), batch_size=32, seed=0):
        ...

This DataLoader has the debugger's defaults (full batch, shuffled, seeded); PyTorch's, over
datasets, is `calcml.utils.data.DataLoader`.

`seed` may be an int (the same int gives identical arrays), a `np.random.Generator`, or None to
draw from the engine's generator (the one `cm.manual_seed` sets). Random numbers are drawn in the
order: clean points, shuffle, noise; so the same seed with a different `noise` moves the same points.
"""
from __future__ import annotations

import math
from operator import index as _as_int

import numpy as np

from . import random as _random
from .tensor import Tensor

__all__ = ["xor", "moons", "circles", "spirals", "sparse_regression", "sine", "digits", "DataLoader"]


def _rng(seed) -> np.random.Generator:
    return _random.generator() if seed is None else np.random.default_rng(seed)


def _check(n, noise, min_n: int = 1) -> int:
    n = _as_int(n)
    if n < min_n:
        raise ValueError(f"n must be at least {min_n}, got {n}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    return n


def _shuffle_and_noise(rng, X, y, noise):
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    return X + noise * rng.normal(size=X.shape), y.astype(np.int64)


def xor(n: int = 200, noise: float = 0.1, seed=0):
    """Points around the corners (±1, ±1); label 1 where the two signs differ. Balanced."""
    n = _check(n, noise)
    rng = _rng(seed)
    corners = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])
    which = np.arange(n) % 4  # labels alternate 0, 1, 0, 1: class sizes differ by at most one
    X = corners[which]
    y = (X[:, 0] * X[:, 1] < 0)
    return _shuffle_and_noise(rng, X, y, noise)


def moons(n: int = 200, noise: float = 0.1, seed=0):
    """Two interleaving half circles, as scikit-learn's make_moons: label 0 upper, 1 lower."""
    n = _check(n, noise)
    rng = _rng(seed)
    n_out, n_in = n // 2, n - n // 2
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
                        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1)])
    y = np.repeat([0, 1], [n_out, n_in])
    return _shuffle_and_noise(rng, X, y, noise)


def circles(n: int = 200, noise: float = 0.05, factor: float = 0.5, seed=0):
    """An outer unit circle (label 0) around an inner circle of radius `factor` (label 1)."""
    n = _check(n, noise)
    if not 0 <= factor < 1:
        raise ValueError(f"factor is the inner radius over the outer and must be in [0, 1), got {factor}")
    rng = _rng(seed)
    n_out, n_in = n // 2, n - n // 2
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    X = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], axis=1),
                        factor * np.stack([np.cos(t_in), np.sin(t_in)], axis=1)])
    y = np.repeat([0, 1], [n_out, n_in])
    return _shuffle_and_noise(rng, X, y, noise)


def spirals(k: int = 3, n: int = 300, noise: float = 0.2, seed=0):
    """k interleaved spiral arms from the origin to radius 1, labels 0..k-1, n split evenly.

    `noise` is the std of a Gaussian jitter on each point's angle (radians), as in CS231n's spiral.
    """
    k = _as_int(k)
    if k < 1:
        raise ValueError(f"k (the number of arms) must be at least 1, got {k}")
    n = _check(n, noise, min_n=k)
    rng = _rng(seed)
    counts = np.full(k, n // k) + (np.arange(k) < n % k)  # sizes differ by at most one
    y = np.repeat(np.arange(k), counts)
    r = np.concatenate([np.linspace(0.0, 1.0, c) for c in counts])
    theta = 2 * np.pi * y / k + 4.0 * r  # each arm turns 4 radians, offset by 2π/k
    order = rng.permutation(n)
    y, r, theta = y[order], r[order], theta[order] + noise * rng.normal(size=n)
    X = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
    return X, y.astype(np.int64)


def sparse_regression(n: int = 200, n_features: int = 20, n_informative: int = 3, noise: float = 0.1,
                      seed=0, *, return_coef: bool = False):
    """y = X @ coef + noise with only the first `n_informative` coefficients non-zero.

    Made to show that L1 drives the irrelevant weights to exactly zero while L2 only shrinks them.
    Informative magnitudes run evenly from 1 to 3 with random signs. X ~ N(0, 1) of shape
    (n, n_features); y float64 of shape (n, 1). `return_coef=True` returns `(X, y, coef)`.
    """
    n = _check(n, noise)
    n_features, n_informative = _as_int(n_features), _as_int(n_informative)
    if n_features < 1:
        raise ValueError(f"n_features must be at least 1, got {n_features}")
    if not 0 <= n_informative <= n_features:
        raise ValueError(f"n_informative must be in [0, n_features={n_features}], got {n_informative}")
    rng = _rng(seed)
    X = rng.normal(size=(n, n_features))
    coef = np.zeros(n_features)
    coef[:n_informative] = rng.choice([-1.0, 1.0], size=n_informative) * np.linspace(1, 3, n_informative)
    y = (X @ coef)[:, None] + noise * rng.normal(size=(n, 1))
    return (X, y, coef) if return_coef else (X, y)


def sine(n: int = 200, noise: float = 0.1, seed=0, x_range=(-3, 3)):
    """y = sin(x) + noise, x uniform in `x_range` (unsorted: plot via np.argsort). Shapes (n, 1)."""
    n = _check(n, noise)
    low, high = x_range
    if not low < high:
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range}")
    rng = _rng(seed)
    X = rng.uniform(low, high, size=(n, 1))
    return X, np.sin(X) + noise * rng.normal(size=(n, 1))


def digits(images: bool = False):
    """The UCI optical digits: 1,797 handwritten digits as 8×8 images of integers 0..16 (E. Alpaydin
    and C. Kaynak, 1998; CC BY 4.0; shipped in calcml/datasets, no download). Returns (X, y): X
    float64 of shape (1797, 64) in [0, 1] (pixel / 16), or (1797, 1, 8, 8) with `images=True`
    (one channel, as a convolution takes it); y int64 of shape (1797,), the digit."""
    from importlib import resources
    import gzip
    with resources.files("calcml").joinpath("datasets/digits.csv.gz").open("rb") as raw:
        table = np.loadtxt(gzip.open(raw), delimiter=",")
    X, y = table[:, :64] / 16.0, table[:, 64].astype(np.int64)
    return (X.reshape(-1, 1, 8, 8) if images else X), y


class DataLoader:
    """Mini-batches over arrays that share their first dimension, usually `(X, y)`, as PyTorch's.

    Each `iter(loader)` is one epoch of `(X_batch, y_batch)` numpy tuples. `batch_size=None` is the
    full batch. With `shuffle`, every epoch draws a new order from one rng seeded once, so a run is
    repeatable from `seed` yet epochs differ. `len(loader)` is the number of batches per epoch.
    """

    def __init__(self, data, batch_size: int | None = None, shuffle: bool = True, seed=0,
                 drop_last: bool = False):
        if not isinstance(data, (tuple, list)) or not data:
            raise ValueError(f"data must be a tuple of arrays such as (X, y), got {type(data).__name__}")
        arrays = tuple(np.asarray(a.data if isinstance(a, Tensor) else a) for a in data)
        for i, a in enumerate(arrays):
            if a.ndim == 0:
                raise ValueError(f"data[{i}] is a scalar; each array needs one row per sample")
        n = len(arrays[0])
        for i, a in enumerate(arrays[1:], start=1):
            if len(a) != n:
                names = ("X", "y") if len(arrays) == 2 else ("data[0]", f"data[{i}]")
                raise ValueError(f"{names[0]} has {n} samples but {names[1]} has {len(a)}; "
                                 "they must have the same length")
        if n == 0:
            raise ValueError("data has no samples")
        if batch_size is None:
            batch_size = n
        elif isinstance(batch_size, bool) or _as_int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        self.arrays = arrays
        self.n_samples = n
        self.batch_size = _as_int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._rng = _rng(seed)

    def __len__(self) -> int:
        if self.drop_last:
            return self.n_samples // self.batch_size
        return math.ceil(self.n_samples / self.batch_size)

    def __iter__(self):
        order = self._rng.permutation(self.n_samples) if self.shuffle else np.arange(self.n_samples)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield tuple(a[idx] for a in self.arrays)

    def __repr__(self) -> str:
        return (f"DataLoader(n_samples={self.n_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, batches={len(self)})")
