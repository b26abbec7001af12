"""Tensor creation with PyTorch's names and signatures: zeros, ones, full, eye, arange, randn, ...

    import calcml as cm
    cm.zeros(2, 3)                       # or cm.zeros((2, 3)), cm.zeros(size=[2, 3])
    cm.randn(4, 2, requires_grad=True)
    g = cm.Generator().manual_seed(0)    # its own stream of random numbers
    cm.rand(3, generator=g)

Tensors hold float64 (the default dtype, where PyTorch's is float32), float32, or integers and
bools (int64, int32, int16, int8, uint8, bool), which never require grad. As PyTorch:
`tensor([1, 2])` and `arange(5)` are int64, `randint`/`randperm` int64, `arange(0., 5)` float.
`full((2,), 3)` stays float64 (the default dtype) here.
Random functions draw from calcml's generator (`cm.manual_seed`), or from `generator=`: the same
seed repeats calcml's numbers, not PyTorch's.
"""
from __future__ import annotations

import numbers
from operator import index as _as_int

import numpy as np

from . import random as _random
from .device import check_device
from .tensor import Tensor, resolve_dtype
from .tensor import tensor as _engine_tensor

# PyTorch's dtype names. They are numpy dtypes, so `x.dtype == cm.float32` holds and every
# function taking `dtype=` (Tensor, nn.Linear, numpy itself) accepts them.
# (`cm.float` and `cm.double`, PyTorch's aliases, are set in __init__: here they would hide the builtin.)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = long = np.dtype(np.int64)
int32 = np.dtype(np.int32)   # (`cm.int` and `cm.bool`, as `cm.float`, are set in __init__)
int16 = short = np.dtype(np.int16)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
_BOOL = np.dtype(np.bool_)
_FLOATS = (float32, float64)
_ALL = _FLOATS + (int64, int32, int16, int8, uint8, _BOOL)
_DEFAULT_SEED = 67280421310721  # PyTorch's default seed of a new torch.Generator()

__all__ = ["float32", "float64", "int64", "long", "int32", "int16", "short", "int8", "uint8", "get_default_dtype", "Generator", "tensor", "as_tensor",
           "from_numpy", "zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like", "empty_like",
           "eye", "arange", "linspace", "randn", "rand", "randint", "randperm", "normal"]


def get_default_dtype() -> np.dtype:
    """float64: calcml's default (PyTorch's is float32)."""
    return float64


def _dtype(dtype, default=float64) -> np.dtype:
    return default if dtype is None else resolve_dtype(dtype)


def _size(args, size=None) -> tuple:
    """A shape given PyTorch's ways: f(2, 3), f((2, 3)), f([2, 3]) or f(size=(2, 3))."""
    if size is not None:
        if args:
            raise TypeError("give the shape either as arguments or as size=, not both")
        args = (size,)
    if not args:
        raise TypeError("missing the shape: pass sizes such as (2, 3), or () for a scalar")
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    shape = []
    for n in args:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"a size must be a tuple of ints, got {type(n).__name__} {n!r}")
        if n < 0:
            raise RuntimeError(f"sizes must be non-negative, got {tuple(args)}")
        shape.append(_as_int(n))
    return tuple(shape)


def _make(array, requires_grad: bool, device) -> Tensor:
    check_device(device)
    return Tensor(array, requires_grad=requires_grad, dtype=array.dtype)   # dtype=: integers stay integers


def _rng(generator) -> np.random.Generator:
    if generator is None:
        return _random.generator()
    if isinstance(generator, Generator):
        return generator._rng
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator must be a cm.Generator, got {type(generator).__name__}")


class Generator:
    """A random-number stream of its own, as torch.Generator: `cm.Generator().manual_seed(0)`.

    Pass it as `generator=` to the random functions, to `utils.data.DataLoader` and `random_split`.
    A new one starts from PyTorch's default seed, so two new generators give the same numbers.
    """

    def __init__(self, device="cpu"):
        self.device = check_device(device)
        self.manual_seed(_DEFAULT_SEED)

    def manual_seed(self, seed) -> "Generator":
        seed = _as_int(seed)
        self._seed = seed
        self._rng = np.random.default_rng(seed & (2 ** 64 - 1))  # PyTorch takes negative seeds too
        return self

    def seed(self) -> int:
        """Seed from fresh entropy, and return the seed."""
        seed = int(np.random.SeedSequence().entropy) & (2 ** 63 - 1)
        self.manual_seed(seed)
        return seed

    def initial_seed(self) -> int:
        return self._seed

    def __repr__(self) -> str:
        return f"cm.Generator(seed={self._seed})"


# -- from data ---------------------------------------------------------------------------------

def tensor(data, requires_grad: bool = False, dtype=None, name: str | None = None, *, device=None,
           pin_memory: bool = False) -> Tensor:
    """A new leaf tensor holding a copy of `data`: floats float64 (or dtype=), ints int64, bools bool."""
    check_device(device)
    return _engine_tensor(data, requires_grad=requires_grad, dtype=None if dtype is None else _dtype(dtype),
                          name=name)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """`data` as a tensor, sharing its memory when it is already an array of that dtype."""
    check_device(device)
    if isinstance(data, Tensor) and (dtype is None or _dtype(dtype) == data.dtype):
        return data
    array = np.asarray(data.data if isinstance(data, Tensor) else data)
    if dtype is None and array.dtype.kind in "biu":   # ints stay ints, as torch.as_tensor
        dtype = array.dtype if array.dtype in _ALL else int64
    return Tensor(array, dtype=None if dtype is None else _dtype(dtype))


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing the memory of a numpy array, its dtype kept (int64, bool, ... as PyTorch)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    if array.dtype.kind in "biu" and array.dtype not in _ALL:
        raise TypeError(f"can't convert np.ndarray of type {array.dtype}; calcml's integer dtypes are "
                        "int64, int32, int16, int8, uint8 and bool")
    return Tensor(array, dtype=array.dtype if array.dtype.kind in "biu" else None)


# -- filled ------------------------------------------------------------------------------------

def zeros(*shape, size=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return _make(np.zeros(_size(shape, size), _dtype(dtype)), requires_grad, device)


def ones(*shape, size=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return _make(np.ones(_size(shape, size), _dtype(dtype)), requires_grad, device)


def empty(*shape, size=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Values unspecified, as in PyTorch; calcml gives zeros so that no stray NaN can appear."""
    return zeros(*shape, size=size, dtype=dtype, requires_grad=requires_grad, device=device)


def full(size, fill_value, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return _make(np.full(_size((size,)), fill_value, _dtype(dtype)), requires_grad, device)


def _like_dtype(input, dtype):
    data = input.data if isinstance(input, Tensor) else np.asarray(input)
    own = data.dtype if data.dtype in _FLOATS else float64
    return data.shape, _dtype(dtype, default=own)


def zeros_like(input, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    shape, dtype = _like_dtype(input, dtype)
    return _make(np.zeros(shape, dtype), requires_grad, device)


def ones_like(input, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    shape, dtype = _like_dtype(input, dtype)
    return _make(np.ones(shape, dtype), requires_grad, device)


def empty_like(input, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    return zeros_like(input, dtype=dtype, requires_grad=requires_grad, device=device)


def full_like(input, fill_value, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    shape, dtype = _like_dtype(input, dtype)
    return _make(np.full(shape, fill_value, dtype), requires_grad, device)


def eye(n, m=None, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    n, m = _as_int(n), _as_int(n if m is None else m)
    if n < 0 or m < 0:
        raise RuntimeError(f"n and m must be greater or equal to 0, got {n} and {m}")
    return _make(np.eye(n, m, dtype=_dtype(dtype)), requires_grad, device)


def arange(start=0, end=None, step=1, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """[start, end) in steps: arange(5), arange(1, 4), arange(0, 1, 0.25). int64 when every
    argument is an int, as PyTorch; float64 otherwise."""
    if end is None:
        start, end = 0, start
    if dtype is None and all(isinstance(v, numbers.Integral) for v in (start, end, step)):
        dtype = int64
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"upper bound and lower bound inconsistent with step sign: "
                           f"arange({start}, {end}, {step}) would be empty the wrong way round")
    return _make(np.arange(start, end, step, dtype=_dtype(dtype)), requires_grad, device)


def linspace(start, end, steps, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    steps = _as_int(steps)
    if steps < 0:
        raise RuntimeError(f"number of steps must be non-negative, got {steps}")
    return _make(np.linspace(start, end, steps, dtype=_dtype(dtype)), requires_grad, device)


# -- random ------------------------------------------------------------------------------------

def randn(*shape, size=None, generator=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Standard normal samples."""
    dtype = _dtype(dtype)
    return _make(_rng(generator).standard_normal(_size(shape, size)).astype(dtype, copy=False), requires_grad, device)


def rand(*shape, size=None, generator=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Uniform samples in [0, 1)."""
    dtype = _dtype(dtype)
    return _make(_rng(generator).random(_size(shape, size)).astype(dtype, copy=False), requires_grad, device)


def randint(*args, size=None, generator=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """randint(high, size) or randint(low, high, size): whole numbers in [low, high), int64 as PyTorch."""
    if size is None and args and isinstance(args[-1], (tuple, list)):
        *args, size = args
    if size is None or len(args) not in (1, 2):
        raise TypeError("randint takes (high, size) or (low, high, size), with size a tuple such as (10,)")
    low, high = (0, args[0]) if len(args) == 1 else args
    low, high = _as_int(low), _as_int(high)
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    values = _rng(generator).integers(low, high, _size((size,)))
    return _make(values.astype(_dtype(dtype, default=int64)), requires_grad, device)


def randperm(n, *, generator=None, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A random permutation of 0 .. n-1, int64 as PyTorch (calcml's generator, or generator=)."""
    n = _as_int(n)
    if n < 0:
        raise RuntimeError(f"n must be non-negative, got {n}")
    return _make(_rng(generator).permutation(n).astype(_dtype(dtype, default=int64)), requires_grad, device)


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, requires_grad: bool = False,
           device=None) -> Tensor:
    """Normal samples: normal(mean, std, size) for numbers, or mean and/or std as tensors (the
    shape is theirs, broadcast)."""
    mean_v = mean.data if isinstance(mean, Tensor) else mean
    std_v = std.data if isinstance(std, Tensor) else std
    tensors = [v for v in (mean, std) if isinstance(v, (Tensor, np.ndarray))]
    if size is None:
        if not tensors:
            raise TypeError("normal(mean, std) with two numbers needs a size, e.g. normal(0.0, 1.0, size=(3,))")
        shape = np.broadcast_shapes(*(np.shape(v) for v in (mean_v, std_v)))
    else:
        shape = _size((size,))
    if np.any(np.asarray(std_v) < 0):
        raise RuntimeError("normal expects std >= 0.0")
    like = next((t.dtype for t in tensors if t.dtype in _FLOATS), float64)
    dtype = _dtype(dtype, default=like)
    values = mean_v + std_v * _rng(generator).standard_normal(shape)
    return _make(np.asarray(values, dtype=dtype), requires_grad, device)
