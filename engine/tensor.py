"""The Tensor: a numpy array that remembers the op that made it.

Every op result keeps references to its inputs, so `backward()` can walk the
graph in reverse and apply the chain rule. The derivative rules themselves
live in `ops.py`; this module only builds and walks the graph.
"""
from __future__ import annotations

import collections
import contextlib
import numbers

import numpy as np

from . import ops as _ops
from . import tracing as _trace
from . import scope as _scope
from .scope import current_module, describe_module

_FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator): ops inside build no graph."""

    def __enter__(self):
        global _grad_enabled
        self._previous, _grad_enabled = _grad_enabled, False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous
        return False


class enable_grad(no_grad):
    def __enter__(self):
        global _grad_enabled
        self._previous, _grad_enabled = _grad_enabled, True
        return self


class set_grad_enabled(no_grad):
    """`cm.set_grad_enabled(False)` switches graph building off (on with True) at once, as PyTorch;
    as a context manager, `with cm.set_grad_enabled(mode):`, the previous mode returns on exit."""

    def __init__(self, mode: bool):
        global _grad_enabled
        self.mode = bool(mode)
        self._previous, _grad_enabled = _grad_enabled, self.mode

    def __enter__(self):
        global _grad_enabled
        _grad_enabled = self.mode
        return self


# What `max(dim)` / `min(dim)` return, as torch.return_types do: a tuple that also has names.
max_result = collections.namedtuple("max", ["values", "indices"])
min_result = collections.namedtuple("min", ["values", "indices"])


class _Size(int):
    """`x.size` is numpy's element count (an int, as code written for numpy reads it), and calling
    it is PyTorch's `x.size()` (the shape) or `x.size(d)` (the length of dim d)."""

    def __new__(cls, shape: tuple, count: int):
        self = super().__new__(cls, count)
        self._shape = shape
        return self

    def __call__(self, dim=None):
        if dim is None:
            return self._shape
        return self._shape[_check_dim(dim, len(self._shape))]

    def __repr__(self) -> str:
        return int.__repr__(self)

    __str__ = __repr__


def _check_dim(dim, ndim: int) -> int:
    """A dim in [-ndim, ndim) as a non-negative int (a 0-d tensor takes dims 0 and -1, as PyTorch)."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} {dim!r}")
    span = max(ndim, 1)
    if not -span <= dim < span:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-span}, {span - 1}], but got {dim})")
    return int(dim) % span


def _inplace_check(t: "Tensor", what: str) -> None:
    """PyTorch's rule for in-place ops: never on a tensor the graph is tracking."""
    if not (_grad_enabled and t.requires_grad):
        return
    if t._op is None:
        raise RuntimeError(
            f"a leaf Variable that requires grad is being used in an in-place operation ({what}): "
            "an update of a parameter must not be recorded in the graph; wrap it in "
            "`with calcml.no_grad():` (e.g. `with cm.no_grad(): p -= lr * p.grad`)"
        )
    raise RuntimeError(
        f"in-place operation ({what}) on a tensor made by {t._op.name} that is part of a graph: calcml "
        "refuses it, because backward would use the changed values; write it out of place "
        "(e.g. `h = h + x` instead of `h += x`)"
    )


# Integer and bool dtypes a tensor may hold (as PyTorch's long/int/short/char/uint8/bool); they
# never require grad. Arithmetic promotes them as numpy does (int64 + float64 -> float64).
_INT_DTYPES = tuple(np.dtype(t) for t in (np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_))
_DTYPES = _FLOAT_DTYPES + _INT_DTYPES


def resolve_dtype(dtype) -> np.dtype:
    """A dtype calcml tensors hold, from anything numpy reads as one (cm.float32, np.int64, 'bool');
    a TypeError saying which there are, for anything else."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in _DTYPES:
        name = resolved if resolved is not None else dtype
        raise TypeError(f"calcml tensors hold float64 (the default), float32, int64, int32, int16, int8, "
                        f"uint8 or bool, not {name}, so they cannot convert to {name}; use cm.float64, "
                        "cm.float32, cm.long, ...")
    return resolved


_NO_GRAD_DTYPE = ("Only Tensors of floating point and complex dtype can require gradients (this one is {}); "
                  "cast it first, e.g. x.float() or x.double()")


def _as_array(value, dtype=None, keep_ints: bool = False) -> np.ndarray:
    """Convert user data to an array of a dtype calcml supports.

    Integer and bool data become float64 unless `keep_ints` (cm.tensor, from_numpy: PyTorch's
    torch.tensor keeps them, while torch.Tensor(data) makes floats) or an integer dtype is asked for.
    """
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in _DTYPES:
            raise TypeError(
                f"calcml tensors are float64 (the default), float32, int64, int32, int16, int8, uint8 "
                f"or bool, not {dtype}; pass one of cm.float64, cm.float32, cm.long, cm.int32, cm.bool, ..."
            )
    if isinstance(value, Tensor):
        value = value.data
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind in "biu":
        if dtype is not None:
            return array.astype(dtype, copy=False)
        if keep_ints:  # PyTorch has no uint16/32/64 arithmetic: they become int64
            return array if array.dtype in _INT_DTYPES else array.astype(np.int64)
        return array.astype(np.float64)  # integers and booleans become the default float
    if kind != "f":
        raise TypeError(
            f"cannot make a calcml tensor from {array.dtype} data; "
            "use real numbers (float64 by default, or float32) or integers"
        )
    if dtype is None:
        if array.dtype not in _FLOAT_DTYPES:  # float16 / longdouble
            raise TypeError(
                f"calcml tensors are float64 or float32, not {array.dtype}; convert with .astype(np.float64)"
            )
        return array
    return array.astype(dtype, copy=False)


def _no_bool_subtraction(*operands) -> None:
    """PyTorch refuses `-` with a bool tensor (numpy would count True as 1): so does calcml."""
    if any(isinstance(x, Tensor) and x.data.dtype == np.bool_ for x in operands):
        raise TypeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
                        "trying to invert a mask, use the `~` or `logical_not()` operator instead.")


def _is_size(n) -> bool:
    # Python ints only: a numpy integer scalar (a dataset's sample, an index) is data, Tensor(np.int64(3)).
    return isinstance(n, int) and not isinstance(n, bool)


class Tensor:
    """A numpy array (`.data`) with an optional gradient (`.grad`, a Tensor, as in PyTorch).

    Op results may also hold bool (comparisons) or int64 (`max(dim)` indices) data; those
    never require grad. Tensors hash by identity, so they can key dicts and sets although
    `==` compares elementwise.
    """

    __slots__ = ("data", "_grad", "requires_grad", "name", "_op", "_inputs", "_attrs", "_module",
                 "_retains_grad", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, data=None, *sizes, requires_grad: bool = False, name: str | None = None, dtype=None):
        if _is_size(data) and all(_is_size(n) for n in sizes):
            # PyTorch's legacy constructor Tensor(2, 3): a float tensor of that shape, its values
            # unspecified there and zeros here (as cm.empty). A bare float, Tensor(0.0), stays a 0-d tensor.
            self.data = np.zeros((int(data),) + tuple(int(n) for n in sizes), _as_array(0.0, dtype).dtype)
        elif sizes:
            raise TypeError(f"Tensor() takes data (a list, array or number) or sizes (ints, as Tensor(2, 3)), "
                            f"got {(data,) + sizes!r}; for a shape write cm.empty(2, 3) or cm.zeros(2, 3)")
        elif data is None:
            self.data = np.zeros((0,), _as_array(0.0, dtype).dtype)   # Tensor(): empty, as PyTorch
        else:
            self.data = _as_array(data, dtype)
        self._grad = None
        if requires_grad and self.data.dtype not in _FLOAT_DTYPES:
            raise RuntimeError(_NO_GRAD_DTYPE.format(self.data.dtype))
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._op = None
        self._inputs = ()
        self._attrs = ()
        self._module = None
        self._retains_grad = False

    # -- the gradient: a Tensor (None until a backward reaches this tensor) ---------------
    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is None or isinstance(value, Tensor):
            self._grad = value
        else:  # numpy arrays are still accepted, and wrapped (no copy)
            value = np.asarray(value)
            if value.shape != self.data.shape:
                raise RuntimeError(f"assigned grad has shape {value.shape}, but the tensor has shape {self.shape}")
            self._grad = _wrap(value)

    # -- numpy interoperation: np.asarray(t) is t.data -------------------------------------
    def __array__(self, dtype=None, copy=None):
        if dtype is None and not copy:
            return self.data
        return np.array(self.data, dtype=dtype, copy=True) if copy else np.asarray(self.data, dtype=dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # `ndarray + Tensor` (numpy's operators) becomes the Tensor op, as Tensor's own
        # reflected operator; any other ufunc (np.isfinite(t), np.abs(t), out=...) runs on the
        # values and gives plain numpy results, with no gradient.
        if method == "__call__" and not kwargs and len(inputs) == 2:
            name = _UFUNC_OPERATORS.get(ufunc)
            if name is not None:
                a, b = inputs
                if isinstance(a, Tensor):
                    return getattr(a, name[0])(b)
                return getattr(b, name[1])(a)
        inputs = tuple(x.data if isinstance(x, Tensor) else x for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(x.data if isinstance(x, Tensor) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __index__(self) -> int:
        if self.data.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.data)

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.data.size} values is ambiguous; "
                               "use .any() or .all()")
        return bool(self.data)

    # -- basic facts ---------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return _Size(self.data.shape, self.data.size)

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return self.data.size

    nelement = numel

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def op(self) -> str | None:
        """Name of the op that produced this tensor (None for leaves)."""
        return self._op.name if self._op is not None else None

    @property
    def is_leaf(self) -> bool:
        return self._op is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        extra = ""
        if self.name:
            extra += f", name={self.name!r}"
        if self._op is not None:
            extra += f", op={self._op.name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self.data, precision=4, threshold=20, prefix="tensor(")
        return f"tensor({body}{extra})"

    def numpy(self) -> np.ndarray:
        return self.data

    def cpu(self) -> "Tensor":
        return self  # calcml's one device

    def cuda(self, device=None) -> "Tensor":
        from .device import check_device
        check_device("cuda")  # raises: calcml runs on the CPU
        return self

    def to(self, *args, **kwargs) -> "Tensor":
        """`x.to('cpu')`, `.to(cm.device('cpu'))`, `.to(cm.float32)`, `.to(other)` (its dtype), or
        device=/dtype=: self when nothing changes, as PyTorch; a GPU is refused."""
        from .device import to_arguments
        _, dtype = to_arguments(args, kwargs)
        if dtype is None:
            return self
        return self._cast(dtype)

    def item(self) -> float:
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def clone(self) -> "Tensor":
        """A copy of the values, in the graph (the gradient flows back to self)."""
        return self * 1 if self.requires_grad and _grad_enabled else _wrap(self.data.copy())

    def detach(self) -> "Tensor":
        """The same values, cut off from the graph (shares memory)."""
        return _wrap(self.data)

    def retain_grad(self) -> None:
        """Keep `.grad` on this non-leaf tensor after backward (as PyTorch does)."""
        self._retains_grad = True

    def zero_grad(self) -> None:
        self._grad = None

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if self._op is not None and not requires_grad:
            raise RuntimeError("requires_grad_(False) only works on leaf tensors; use .detach()")
        if requires_grad and self.data.dtype not in _FLOAT_DTYPES:
            raise RuntimeError(_NO_GRAD_DTYPE.format(self.data.dtype))
        self.requires_grad = bool(requires_grad)
        return self

    # -- casts, as PyTorch: self when the dtype is already right; float -> float keeps the graph
    # (the CAST primitive casts the gradient back), a cast to an integer or bool dtype cuts it.
    def _cast(self, dtype) -> "Tensor":
        dtype = resolve_dtype(dtype)
        if dtype == self.data.dtype:
            return self
        if dtype in _FLOAT_DTYPES:
            return _apply(_ops.CAST, self, attrs=(dtype,))
        return _wrap(self.data.astype(dtype))

    def float(self) -> "Tensor":
        return self._cast(np.float32)

    def double(self) -> "Tensor":
        return self._cast(np.float64)

    def long(self) -> "Tensor":
        return self._cast(np.int64)

    def int(self) -> "Tensor":
        return self._cast(np.int32)

    def short(self) -> "Tensor":
        return self._cast(np.int16)

    def char(self) -> "Tensor":
        return self._cast(np.int8)

    def byte(self) -> "Tensor":
        return self._cast(np.uint8)

    def half(self) -> "Tensor":
        raise TypeError("calcml has no float16; use .float() (float32) or .double() (float64)")

    def type(self, dtype=None, non_blocking: bool = False, **kwargs):
        """`x.type(cm.float32)` casts; `x.type()` names the type, as PyTorch ('torch.DoubleTensor')."""
        if dtype is None:
            return _TYPE_NAMES.get(self.data.dtype, str(self.data.dtype))
        if isinstance(dtype, str):
            names = {v: k for k, v in _TYPE_NAMES.items()}
            if dtype.replace("calcml.", "torch.") not in names:
                raise TypeError(f"invalid type: {dtype!r}")
            dtype = names[dtype.replace("calcml.", "torch.")]
        return self._cast(dtype)

    def is_floating_point(self) -> bool:
        return self.data.dtype in _FLOAT_DTYPES

    # -- autograd ------------------------------------------------------------------
    def backward(self, gradient=None) -> None:
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires grad."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the ops that "
                "made it had requires_grad=True (or it was computed under cm.no_grad())"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() needs a gradient argument for a non-scalar output of shape {self.shape}; "
                    "reduce it first (e.g. .sum() or .mean())"
                )
            seed = np.ones(self.data.shape, dtype=self.data.dtype)
        else:
            seed = np.broadcast_to(_as_array(gradient, self.dtype), self.shape)
        _backprop(self, seed, create_graph=False, targets=None)

    # -- operators -----------------------------------------------------------------
    def __add__(self, other):
        return _apply(_ops.ADD, *_promoted(self, _lift(other, self)))

    def __radd__(self, other):
        return _apply(_ops.ADD, *_promoted(_lift(other, self), self))

    def __sub__(self, other):
        _no_bool_subtraction(self, other)
        return _apply(_ops.SUB, *_promoted(self, _lift(other, self)))

    def __rsub__(self, other):
        _no_bool_subtraction(self, other)
        return _apply(_ops.SUB, *_promoted(_lift(other, self), self))

    def __mul__(self, other):
        return _apply(_ops.MUL, *_promoted(self, _lift(other, self)))

    def __rmul__(self, other):
        return _apply(_ops.MUL, *_promoted(_lift(other, self), self))

    def __truediv__(self, other):
        return _apply(_ops.DIV, *_promoted(self, _lift(other, self)))

    def __rtruediv__(self, other):
        return _apply(_ops.DIV, *_promoted(_lift(other, self), self))

    def __pow__(self, other):
        return _apply(_ops.POW, *_promoted(self, _lift(other, self)))

    def __rpow__(self, other):
        return _apply(_ops.POW, *_promoted(_lift(other, self), self))

    def __matmul__(self, other):
        return _apply(_ops.MATMUL, *_promoted(self, _lift(other, self)))

    def __rmatmul__(self, other):
        return _apply(_ops.MATMUL, *_promoted(_lift(other, self), self))

    def __abs__(self):
        return _apply(_ops.ABS, self)

    def __neg__(self):
        return _apply(_ops.NEG, self)

    def __pos__(self):
        return self

    # -- in-place ops (PyTorch's rules: see _inplace_check) -------------------------------
    # They write into `.data` itself, so an optimizer or a view holding the array sees the change.
    def _inplace(self, ufunc, other, what):
        _inplace_check(self, what)
        ufunc(self.data, _raw(other), out=self.data, casting="same_kind")
        return self

    def __iadd__(self, other):
        return self._inplace(np.add, other, "+=")

    def __isub__(self, other):
        return self._inplace(np.subtract, other, "-=")

    def __imul__(self, other):
        return self._inplace(np.multiply, other, "*=")

    def __itruediv__(self, other):
        return self._inplace(np.true_divide, other, "/=")

    def add_(self, other, alpha=1):
        other = _raw(other)
        return self._inplace(np.add, other if alpha == 1 else other * alpha, "add_")

    def sub_(self, other, alpha=1):
        other = _raw(other)
        return self._inplace(np.subtract, other if alpha == 1 else other * alpha, "sub_")

    def mul_(self, other):
        return self._inplace(np.multiply, other, "mul_")

    def div_(self, other):
        return self._inplace(np.true_divide, other, "div_")

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        _inplace_check(self, "fill_")
        self.data[...] = _raw(value)
        return self

    def copy_(self, src):
        _inplace_check(self, "copy_")
        np.copyto(self.data, np.broadcast_to(_raw(src), self.data.shape), casting="same_kind")
        return self

    def clamp_(self, min=None, max=None):
        _inplace_check(self, "clamp_")
        if min is not None or max is not None:
            np.clip(self.data, _raw(min), _raw(max), out=self.data)
        return self

    clip_ = clamp_

    # -- comparisons: elementwise, bool tensors carrying no gradient (PyTorch's meaning) ---
    def _compare(self, ufunc, other):
        if other is None:
            return NotImplemented
        return _wrap(np.asarray(ufunc(self.data, np.asarray(_raw(other)))))

    def __eq__(self, other):
        return self._compare(np.equal, other)

    def __ne__(self, other):
        return self._compare(np.not_equal, other)

    def __lt__(self, other):
        return self._compare(np.less, other)

    def __le__(self, other):
        return self._compare(np.less_equal, other)

    def __gt__(self, other):
        return self._compare(np.greater, other)

    def __ge__(self, other):
        return self._compare(np.greater_equal, other)

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    def equal(self, other) -> bool:
        """True if both have the same shape and values (torch.equal)."""
        other = np.asarray(_raw(other))
        return self.data.shape == other.shape and bool(np.array_equal(self.data, other))

    # (axis=/keepdims=/out= too: np.all(t) and np.any(t) call these)
    def all(self, dim=None, keepdim: bool = False, *, axis=None, keepdims: bool = False, out=None):
        return _wrap(np.asarray(np.all(self.data, axis=_dim(dim, axis), keepdims=keepdim or keepdims)))

    def any(self, dim=None, keepdim: bool = False, *, axis=None, keepdims: bool = False, out=None):
        return _wrap(np.asarray(np.any(self.data, axis=_dim(dim, axis), keepdims=keepdim or keepdims)))

    def bool(self):
        return self._cast(np.bool_)

    # Tensors stay usable as dict keys and set members: hashing and `is` are by identity.
    __hash__ = object.__hash__

    def __getitem__(self, index):
        index = _normalise_index(index)
        return _apply(_ops.GETITEM, self, attrs=(index,))

    # -- elementwise math ----------------------------------------------------------
    def erf(self):
        return _apply(_ops.ERF, self)

    def exp(self):
        return _apply(_ops.EXP, self)

    def log(self):
        return _apply(_ops.LOG, self)

    def log1p(self):
        return _apply(_ops.LOG1P, self)

    def sqrt(self):
        return _apply(_ops.SQRT, self)

    def abs(self):
        return _apply(_ops.ABS, self)

    def sin(self):
        return _apply(_ops.SIN, self)

    def cos(self):
        return _apply(_ops.COS, self)

    def log10(self):
        return self.log() * (1.0 / np.log(10.0))

    def pow(self, exponent):
        return self ** exponent

    def round(self, decimals: int = 0):
        """Rounded values (half to even, as PyTorch); the gradient is 0, as PyTorch's."""
        # where() with a mask that is never true: the values are the rounded constant, and the
        # derivative is exactly 0 (0 * x would turn inf into NaN).
        return where(np.zeros(self.shape, dtype=bool), self, _wrap(np.round(self.data, decimals)))

    def masked_fill(self, mask, value):
        """`value` where `mask` holds, self elsewhere; the gradient reaches self where the mask is false."""
        mask = np.asarray(_raw(mask))
        if mask.dtype != bool:
            raise TypeError(f"masked_fill expects a bool mask (a comparison such as x > 0), got {mask.dtype}")
        if np.broadcast_shapes(mask.shape, self.shape) != self.shape:
            raise RuntimeError(f"masked_fill: the mask of shape {mask.shape} does not broadcast to {self.shape}")
        if isinstance(value, Tensor) and value.ndim != 0:
            raise RuntimeError("masked_fill only supports a 0-dimensional value tensor")
        return where(np.broadcast_to(mask, self.shape), value, self)

    def tanh(self):
        return _apply(_ops.TANH, self)

    def sigmoid(self):
        return _apply(_ops.SIGMOID, self)

    def relu(self):
        return _apply(_ops.RELU, self)

    def clip(self, min=None, max=None):
        return _apply(_ops.CLIP, self, attrs=(min, max))

    clamp = clip

    # -- reductions and shape --------------------------------------------------------
    # The first argument is numpy's axis and PyTorch's dim alike; both spellings are accepted.
    def sum(self, axis=None, keepdims: bool = False, *, dim=None, keepdim: bool = False):
        return _apply(_ops.SUM, self, attrs=(_axis(_dim(dim, axis)), keepdims or keepdim))

    def mean(self, axis=None, keepdims: bool = False, *, dim=None, keepdim: bool = False):
        return _apply(_ops.MEAN, self, attrs=(_axis(_dim(dim, axis)), keepdims or keepdim))

    def var(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None,
            keepdims: bool = False):
        """PyTorch's variance: divided by n − correction, correction 1 by default (numpy's ddof is 0)."""
        from . import composites
        return composites.var(self, dim, unbiased, keepdim, correction=correction, axis=axis, keepdims=keepdims)

    def std(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None, axis=None,
            keepdims: bool = False):
        from . import composites
        return composites.var(self, dim, unbiased, keepdim, correction=correction, axis=axis,
                              keepdims=keepdims).sqrt()

    def max(self, dim=None, keepdim: bool = False, *, axis=None, keepdims: bool = False):
        """max() is the largest element; max(dim) is (values, indices), as in PyTorch.

        numpy's axis=/keepdims= keep numpy's meaning: the maxima only. The gradient of
        max(dim).values flows to the arg-max entry; that of max()/max(axis=) is split between ties.
        """
        if dim is None:
            return _apply(_ops.MAX, self, attrs=(_axis(axis), keepdims))
        return max_result(*self._pick(dim, keepdim, np.argmax))

    def min(self, dim=None, keepdim: bool = False, *, axis=None, keepdims: bool = False):
        """min() is the smallest element; min(dim) is (values, indices), as in PyTorch."""
        if dim is None:
            return -_apply(_ops.MAX, -self, attrs=(_axis(axis), keepdims))
        return min_result(*self._pick(dim, keepdim, np.argmin))

    def argmax(self, dim=None, keepdim: bool = False):
        return _wrap(_arg_reduce(np.argmax, self.data, dim, keepdim))

    def argmin(self, dim=None, keepdim: bool = False):
        return _wrap(_arg_reduce(np.argmin, self.data, dim, keepdim))

    def _pick(self, dim, keepdim, arg):
        """(values, indices) along `dim`: the values are picked by indexing, so the gradient
        goes to the picked entry only (as PyTorch's), and double backward works."""
        if isinstance(dim, Tensor):
            raise TypeError("max/min(other tensor) is not supported; use cm.where(a > b, a, b)")
        dim = int(dim)
        if self.ndim == 0:
            return self, _wrap(np.asarray(0, dtype=np.int64))
        dim %= self.ndim
        index = np.expand_dims(arg(self.data, axis=dim), dim)
        grid = list(np.ogrid[tuple(slice(n) for n in index.shape)])
        grid[dim] = index
        values = _apply(_ops.GETITEM, self, attrs=(tuple(grid),))
        if not keepdim:
            values = values.reshape(values.shape[:dim] + values.shape[dim + 1:])
            index = np.squeeze(index, dim)
        return values, _wrap(index.astype(np.int64))

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _apply(_ops.RESHAPE, self, attrs=(shape,))

    # calcml's reshape never needs contiguous memory, so view is reshape
    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        from . import composites
        return composites.flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim: int):
        d = _check_dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def squeeze(self, dim=None):
        """Drop dims of length 1 (all, or those of `dim`, an int or a tuple; others are kept, as PyTorch)."""
        if dim is None:
            dims = set(range(self.ndim))
        else:
            dims = {_check_dim(d, self.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        shape = tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1))
        return self if shape == self.shape else self.reshape(shape)

    def expand(self, *sizes):
        """Broadcast to `sizes` (-1 keeps a dim); new dims go in front, as PyTorch."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        extra = len(sizes) - self.ndim
        if extra < 0:
            raise RuntimeError(f"expand: the number of sizes ({len(sizes)}) must be at least the tensor's "
                               f"number of dims ({self.ndim})")
        if any(n == -1 for n in sizes[:extra]):
            raise RuntimeError("expand: -1 is not allowed for a new leading dim")
        shape = tuple(self.shape[i - extra] if n == -1 else n for i, n in enumerate(sizes))
        return self.broadcast_to(shape)

    def expand_as(self, other):
        return self.broadcast_to(other.shape)

    def repeat(self, *sizes):
        """Tile the tensor `sizes` times along each dim (numpy's tile), from broadcast and reshape."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if len(sizes) < self.ndim:
            raise RuntimeError(f"repeat: the number of repeats ({len(sizes)}) must be at least the tensor's "
                               f"number of dims ({self.ndim})")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        paired = tuple(x for n in shape for x in (1, n))            # (1, s0, 1, s1, ...)
        tiled = tuple(x for r, n in zip(sizes, shape) for x in (r, n))  # (r0, s0, r1, s1, ...)
        out = self.reshape(paired).broadcast_to(tiled)
        return out.reshape(tuple(r * n for r, n in zip(sizes, shape)))

    def split(self, split_size_or_sections, dim: int = 0):
        from . import composites
        return composites.split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0):
        from . import composites
        return composites.chunk(self, chunks, dim)

    def gather(self, dim: int, index):
        from . import composites
        return composites.gather(self, dim, index)

    def scatter_add(self, dim: int, index, src):
        from . import composites
        return composites.scatter_add(self, dim, index, src)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        from . import composites
        return composites.topk(self, k, dim, largest, sorted)

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        from . import composites
        return composites.sort(self, dim, descending, stable)

    def mm(self, other):
        if self.ndim != 2 or np.ndim(_raw(other)) != 2:
            raise RuntimeError(f"mm expects two matrices (2-D), got shapes {self.shape} and {np.shape(_raw(other))}")
        return self @ other

    def matmul(self, other):
        return self @ other

    def transpose(self, *axes):
        """transpose(d0, d1) swaps two dims (PyTorch's meaning); transpose() reverses all dims,
        and a full permutation (a tuple, or three or more dims) is numpy's (see also permute)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        elif len(axes) == 2:
            d0, d1 = (a % self.ndim for a in axes)
            axes = list(range(self.ndim))
            axes[d0], axes[d1] = axes[d1], axes[d0]
        axes = tuple(a % self.ndim for a in axes) if axes else None
        return _apply(_ops.TRANSPOSE, self, attrs=(axes,))

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return self.transpose(tuple(dims))

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but it has {self.ndim}")
        return self.T

    @property
    def T(self):
        return _apply(_ops.TRANSPOSE, self, attrs=(None,))

    def broadcast_to(self, shape):
        return _apply(_ops.BROADCAST_TO, self, attrs=(tuple(shape),))

    # -- composites (built from the primitives above) --------------------------------
    def logsumexp(self, axis=-1, keepdims: bool = False):
        from . import composites
        return composites.logsumexp(self, axis=axis, keepdims=keepdims)

    def softmax(self, axis=-1, *, dim=None):
        from . import composites
        return composites.softmax(self, axis=_dim(dim, axis))

    def log_softmax(self, axis=-1, *, dim=None):
        from . import composites
        return composites.log_softmax(self, axis=_dim(dim, axis))

    def softplus(self):
        from . import composites
        return composites.softplus(self)

    def leaky_relu(self, negative_slope: float = 0.01):
        from . import composites
        return composites.leaky_relu(self, negative_slope)


def tensor(data, requires_grad: bool = False, dtype=None, name: str | None = None) -> Tensor:
    """Make a leaf tensor from an array-like: floats are float64 (or dtype=), Python ints int64
    and bools bool, as torch.tensor (Tensor(data) makes floats, as torch.Tensor)."""
    if isinstance(data, Tensor):
        data = data.data
    array = _as_array(np.array(data, copy=True) if isinstance(data, np.ndarray) else data, dtype, keep_ints=True)
    return Tensor(array, requires_grad=requires_grad, name=name, dtype=array.dtype)


def where(condition, x, y) -> Tensor:
    """Pick `x` where `condition` holds, else `y`; the gradient flows to the chosen side."""
    like = x if isinstance(x, Tensor) else y if isinstance(y, Tensor) else None
    cond = np.asarray(_raw(condition), dtype=bool)
    x = _lift(x, like)
    y = _lift(y, like)
    return _apply(_ops.WHERE, x, y, attrs=(cond,))


_TYPE_NAMES = {np.dtype(np.float64): "torch.DoubleTensor", np.dtype(np.float32): "torch.FloatTensor",
               np.dtype(np.int64): "torch.LongTensor", np.dtype(np.int32): "torch.IntTensor",
               np.dtype(np.int16): "torch.ShortTensor", np.dtype(np.int8): "torch.CharTensor",
               np.dtype(np.uint8): "torch.ByteTensor", np.dtype(np.bool_): "torch.BoolTensor"}


# -- graph construction ---------------------------------------------------------------


def _wrap(array) -> Tensor:
    """Fast constructor for op results: no validation, no graph."""
    t = Tensor.__new__(Tensor)
    t.data = array
    t._grad = None
    t.requires_grad = False
    t.name = None
    t._op = None
    t._inputs = ()
    t._attrs = ()
    t._module = None
    t._retains_grad = False
    return t


def branch(x: Tensor) -> Tensor:
    """x's values as a node of their own in the graph, whose gradient is kept: the part of
    ∂L/∂x that flows through what reads this node (see ops.BRANCH). Not traced."""
    t = _wrap(x.data)
    t.requires_grad = True
    t._op = _ops.BRANCH
    t._inputs = (x,)
    t._module = _scope._stack[-1] if _scope._stack else None
    t._retains_grad = True
    return t

def _arg_reduce(arg, data, dim, keepdim):
    if dim is None:
        return np.asarray(arg(data), dtype=np.int64)
    return np.asarray(arg(data, axis=dim, keepdims=keepdim), dtype=np.int64)


# numpy ufunc -> (Tensor operator, reflected operator), for `ndarray <op> Tensor`
_UFUNC_OPERATORS = {
    np.add: ("__add__", "__radd__"), np.subtract: ("__sub__", "__rsub__"),
    np.multiply: ("__mul__", "__rmul__"), np.true_divide: ("__truediv__", "__rtruediv__"),
    np.power: ("__pow__", "__rpow__"), np.matmul: ("__matmul__", "__rmatmul__"),
    np.equal: ("__eq__", "__eq__"), np.not_equal: ("__ne__", "__ne__"),
    np.less: ("__lt__", "__gt__"), np.less_equal: ("__le__", "__ge__"),
    np.greater: ("__gt__", "__lt__"), np.greater_equal: ("__ge__", "__le__"),
}


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


def _lift(value, like) -> Tensor:
    """Turn a Python number or numpy array into a constant tensor.

    Python numbers take the dtype of the tensor they meet, so float32 stays float32.
    """
    if isinstance(value, Tensor):
        return value
    if type(value) is np.ndarray and value.dtype in _FLOAT_DTYPES:  # the common case: no checks needed
        return _wrap(value)
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        dtype = like.data.dtype if like is not None else np.dtype(np.float64)
        if dtype.kind in "biu":  # PyTorch: int tensor * 0.5 is float, bool tensor + 1 is int64
            if not isinstance(value, numbers.Integral):
                dtype = np.dtype(np.float64)
            elif dtype.kind == "b":
                dtype = np.dtype(np.int64)
        return _wrap(np.asarray(value, dtype=dtype))
    if isinstance(value, (list, tuple)) and like is not None:  # lists, like numbers, follow the tensor
        return Tensor(value, dtype=like.data.dtype)
    return Tensor(value)


_FLOAT32 = np.dtype(np.float32)


def _promoted(a: Tensor, b: Tensor) -> tuple:
    """PyTorch's promotion where an integer tensor meets a float32 one: float32 (numpy would
    give float64 for int32 and int64). Other pairs promote alike in both."""
    da, db = a.data.dtype, b.data.dtype
    if da is db or (da != _FLOAT32 and db != _FLOAT32):
        return a, b
    if da.kind in "iu" and db == _FLOAT32:
        return _wrap(a.data.astype(_FLOAT32)), b
    if db.kind in "iu" and da == _FLOAT32:
        return a, _wrap(b.data.astype(_FLOAT32))
    return a, b

def _dim(dim, axis):
    return axis if dim is None else dim


def _axis(axis):
    if isinstance(axis, list):
        return tuple(axis)
    return axis


def _normalise_index(index):
    """Tensors used as indices become their integer arrays."""
    if isinstance(index, Tensor):  # a bool tensor is a mask, any other an integer index
        return index.data if index.data.dtype == bool else index.data.astype(np.intp)
    if isinstance(index, tuple):
        return tuple((i.data if i.data.dtype == bool else i.data.astype(np.intp))
                     if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _apply(op, *inputs: Tensor, attrs: tuple = ()) -> Tensor:
    """Run one primitive's forward and, when gradients are on, link the result into the graph."""
    try:
        if len(inputs) == 1:
            out = op.forward(inputs[0].data, *attrs)
        else:
            out = op.forward(*[t.data for t in inputs], *attrs)
    except (ValueError, IndexError) as error:
        raise _op_error(op, inputs, attrs, error) from None
    if type(out) is not np.ndarray:  # numpy returns scalars for 0-d results
        out = np.asarray(out)
    result = _wrap(out)
    stack = _scope._stack
    if _grad_enabled:
        for t in inputs:
            if t.requires_grad:
                result.requires_grad = True
                result._op = op
                result._inputs = inputs
                result._attrs = attrs
                result._module = stack[-1] if stack else None
                break
    tracer = _trace.active
    if tracer is not None:
        tracer.record_forward(op, inputs, attrs, result, stack[-1] if stack else None)
    return result


def _op_error(op, inputs, attrs, error) -> Exception:
    where = describe_module(current_module())
    shapes = f" {op.symbol} ".join(str(t.shape) for t in inputs) if op.symbol else \
        ", ".join(str(t.shape) for t in inputs)
    prefix = f"{where}: " if where else ""
    detail = str(error)
    cls = IndexError if isinstance(error, IndexError) else ValueError
    return cls(f"{prefix}{op.name} {shapes}: {detail}")


# -- backward ---------------------------------------------------------------------------


def _topological_order(root: Tensor) -> list:
    """Ops reachable from `root` that need a gradient, each after all of its inputs.

    An iterative depth-first post-order (a chain of thousands of ops must not hit Python's
    recursion limit): a node is appended once every input below it is.
    """
    order, visited = [], {root}
    stack = [(root, iter(root._inputs))]
    while stack:
        node, parents = stack[-1]
        for parent in parents:
            if parent._op is not None and parent.requires_grad and parent not in visited:
                visited.add(parent)
                stack.append((parent, iter(parent._inputs)))
                break
        else:
            stack.pop()
            order.append(node)
    return order


def _backprop(root: Tensor, seed, create_graph: bool, targets):
    """Propagate `seed` = dL/d(root) backwards through the graph.

    With `targets` (a set of tensors) gradients are returned for those tensors and
    nothing is stored on `.grad`; without, they accumulate on the leaves' `.grad`.
    With `create_graph` the backward rules run as engine ops, so the gradients
    are tensors that can themselves be differentiated.
    """
    tracer = _trace.active
    grads = {root: _wrap(seed) if create_graph else seed}
    order = [] if root._op is None else _topological_order(root)
    found = {}
    # Ops run by the backward rules (create_graph) are not part of the traced forward pass.
    global _grad_enabled
    _trace.active = None
    previous, _grad_enabled = _grad_enabled, create_graph
    try:
        _run_backward(order, grads, found, targets, create_graph, tracer, set())
    finally:
        _grad_enabled = previous
        _trace.active = tracer
    # a leaf root (or a target that is the root itself)
    if root._op is None:
        seed_value = grads.get(root)
        if targets is not None:
            if root in targets:
                found[root] = seed_value
        elif root.requires_grad and seed_value is not None:
            _accumulate_leaf(root, _raw(seed_value), shared=True, claimed=set())
    return found


def _run_backward(order, grads, found, targets, create_graph, tracer, claimed):
    """The chain rule, op by op, from the output back to the leaves.

    `grads` maps each tensor (tensors hash by identity) to dL/d(tensor) so far.
    """
    for node in reversed(order):
        g = grads.pop(node, None)
        if g is None:
            continue
        if node._retains_grad and targets is None:
            node._grad = _wrap(_raw(g) if node._grad is None else node._grad.data + _raw(g))
        if targets is not None and node in targets:
            found[node] = g
        op = node._op
        inputs = node._inputs
        if create_graph:
            args = (*inputs, node, *node._attrs)
        else:
            args = (*[t.data for t in inputs], node.data, *node._attrs)
        record = tracer.begin_backward(node, g) if tracer is not None else None
        partials = op.partials
        for i, parent in enumerate(inputs):
            if not parent.requires_grad:
                continue
            if partials is not None:  # elementwise: gradient = upstream * local derivative
                partial = partials[i]
                factor = partial(*args) if partial is not None else None
                contribution = g if factor is None else g * factor
            else:
                factor = op.factor[i](*args) if (record is not None and op.factor) else None
                contribution = op.vjp[i](g, *args)
            if contribution.shape != parent.data.shape:
                contribution = _ops.unbroadcast(contribution, parent.data.shape)
            if record is not None:
                record.add_input(i, factor, contribution)
            if parent._op is not None:
                previous = grads.get(parent)
                grads[parent] = contribution if previous is None else previous + contribution
            elif targets is not None:
                if parent in targets:
                    previous = found.get(parent)
                    found[parent] = contribution if previous is None else previous + contribution
            else:
                _accumulate_leaf(parent, contribution, contribution is g, claimed)
        if record is not None:
            tracer.end_backward(record)


def _memory_owner(array):
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _accumulate_leaf(leaf: Tensor, contribution, shared: bool, claimed: set) -> None:
    """Add a contribution to `leaf.grad`, making sure no two leaves' `.grad` share memory.

    Backward rules return fresh arrays or views of them (a transpose, a reshape); a view can be
    kept as `.grad` only if no other leaf already holds the same memory (`claimed`, per backward).
    """
    if contribution.dtype != leaf.data.dtype:
        contribution = contribution.astype(leaf.data.dtype)
        shared = False
    if leaf._grad is None:
        if not shared and contribution.base is None and contribution.flags.writeable:
            leaf._grad = _wrap(contribution)  # a fresh array: nobody else holds it
            claimed.add(id(contribution))
            return
        owner = id(_memory_owner(contribution))
        if shared or owner in claimed or not contribution.flags.writeable:
            contribution = contribution.copy()
            owner = id(contribution)
        claimed.add(owner)
        leaf._grad = _wrap(contribution)
    else:
        # a new Tensor, not an in-place add: whoever kept the old .grad (a step record) keeps its values
        leaf._grad = _wrap(leaf._grad.data + contribution)


def grad(outputs, inputs, grad_outputs=None, create_graph: bool = False, allow_unused: bool = False):
    """d(outputs)/d(inputs) as a list of Tensors, like `torch.autograd.grad`; `.grad` is untouched.

    With create_graph=True the results are part of a graph and can be differentiated
    again (e.g. Hessian-vector products by double backward).
    """
    single_input = isinstance(inputs, Tensor)
    input_list = [inputs] if single_input else list(inputs)
    output = outputs
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            total = None
            for k, o in enumerate(outputs):
                go = None if grad_outputs is None else grad_outputs[k]
                term = (o * _lift(_raw(go), o)).sum() if go is not None else o.sum()
                total = term if total is None else total + term
            output, grad_outputs = total, None
        else:
            output = outputs[0]
            if isinstance(grad_outputs, (list, tuple)):
                grad_outputs = grad_outputs[0]
    if not output.requires_grad:
        raise RuntimeError("grad(): the output does not depend on any tensor that requires grad")
    if grad_outputs is None:
        if output.data.size != 1:
            raise RuntimeError(
                f"grad() needs grad_outputs for a non-scalar output of shape {output.shape}"
            )
        seed = np.ones_like(output.data)
    else:
        seed = np.broadcast_to(_as_array(_raw(grad_outputs), output.dtype), output.shape).copy()
    targets = set(input_list)
    found = _backprop(output, seed, create_graph=create_graph, targets=targets)
    results = []
    for t in input_list:
        g = found.get(t)
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad(): an input{' ' + repr(t.name) if t.name else ''} of shape {t.shape} "
                    "was not used to compute the output; pass allow_unused=True to get None"
                )
            results.append(None)
        elif isinstance(g, Tensor):
            results.append(g)
        else:
            results.append(_wrap(np.array(g, dtype=t.dtype, copy=True)))
    return results
