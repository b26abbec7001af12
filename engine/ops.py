"""The derivative table: every primitive op's forward and its vector-Jacobian product, side by side.

Elementwise ops give `partials`: one local derivative per input, so the gradient an input
receives is `upstream * partial` (the chain-rule factor the debugger shows). Other ops give
`vjp`: functions of the upstream gradient. Broadcasting is undone once, centrally, in the
backward loop (`unbroadcast`), not here.

Every rule is written with operators and the small helpers below, which accept either numpy
arrays (ordinary backward: fast) or Tensors (`create_graph=True`: the backward pass is itself
recorded, so it can be differentiated again).

Rule signatures: forward(*arrays, *attrs); partial(*inputs, out, *attrs);
vjp(g, *inputs, out, *attrs). A partial of None means the factor is exactly 1.

Each entry also explains itself, and the debugger reads nothing about derivatives from anywhere
else: `formulas` (shown with every op), `chain` and `rule` (step-into's chain-rule lines: how the
gradient each input receives is written out), `note` (the inspector's product of factors: what a
layer computing this op multiplies the gradient by) and, for an activation, `activation` (the
name of its derivative, its maximum, whether units can be dead or saturated, its parameters). An
activation module (nn.ReLU, ...) names its op, and the functional form (nn.functional.relu, ...)
is made from the entry, so adding an activation is adding its entry here (and one line naming it
as a module in nn/layers.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Activation:
    """What the debugger needs to know of an activation op, besides its local derivative (the op's
    `partials[0]`, which it evaluates on each activation layer's input and output every step)."""
    derivative: str          # the local derivative by name, e.g. "σ'(z) = σ(1 − σ), at most 1/4"
    max_derivative: float    # its largest value: saturation is measured against it
    dead: bool = False       # a unit whose derivative is exactly 0 for the whole batch is dead (ReLU)
    saturates: bool = False  # a unit whose derivative stays below saturation_level × max is saturated
    params: tuple = ()       # (name, default) of each attribute after the input: the module's arguments
    reads_input: bool = False  # its local derivative needs the input, not only the output (leaky_relu's
                               # sign of z: with a negative slope the output's sign is not z's)


# How an elementwise op's chain rule is written, and the fallback for an op without its own words.
# The lines are str.format templates: {g} the gradient an input receives (dL/d%3), {up} the
# upstream gradient (dL/d%5), {factor} an elementwise op's local factor (its formula's right-hand
# side, in the inputs' labels), {x} and {w} the first and second inputs, {other} the other input
# of two, {n} the number of elements per reduced result, {shape} the input's shape and
# {up_shape} the upstream gradient's.
ELEMENTWISE_CHAIN = "{g} = {up} × {factor}"
ELEMENTWISE_RULE = "gradient passed on = upstream × local factor (entry by entry)"
BROADCAST_CHAIN = ", summed over the broadcast axes to shape {shape}"
ROUTED_CHAIN = "{g} = vector-Jacobian product of {up} (see the formula)"
ROUTED_RULE = "gradient passed on = the upstream gradient routed back through the op"


@dataclass(frozen=True, eq=False)
class Op:
    name: str
    forward: object
    formulas: tuple          # one human-readable derivative per input
    partials: tuple | None = None  # elementwise ops: local derivative per input
    vjp: tuple | None = None       # other ops: gradient per input from the upstream gradient
    factor: tuple | None = None    # other ops: the local factor to show in a trace (optional)
    symbol: str = ""               # infix symbol, used in error messages
    chain: tuple = ()              # per input: the gradient it receives, written out (templates above)
    rule: str = ""                 # the chain rule at this op in words
    note: str = ""                 # the local factor in words, as a layer computing this op contributes it
    activation: Activation | None = None   # an activation: what the debugger measures of it

    @property
    def elementwise(self) -> bool:
        return self.partials is not None

    def chain_text(self, i: int) -> str:
        """The template of input i's chain-rule line (the last one serves any further inputs)."""
        if self.chain:
            return self.chain[min(i, len(self.chain) - 1)]
        return ELEMENTWISE_CHAIN if self.elementwise else ROUTED_CHAIN

    @property
    def rule_text(self) -> str:
        return self.rule or (ELEMENTWISE_RULE if self.elementwise else ROUTED_RULE)


# -- helpers that work on numpy arrays and on Tensors alike -----------------------------------

def _is_tensor(x) -> bool:
    return type(x) is not np.ndarray and hasattr(x, "_op")


def raw(x):
    """The numpy values behind a Tensor (masks and counts are constants: no gradient)."""
    return x if type(x) is np.ndarray else (x.data if hasattr(x, "_op") else x)


def _exp(x):
    return x.exp() if _is_tensor(x) else np.exp(x)


# erf has no numpy ufunc: the C library's, element by element (exact to the last bit, about
# 0.1 µs an element: a GELU layer's statistics cost more than a ReLU's).
_erf_each = np.frompyfunc(math.erf, 1, 1)


def _erf_values(x):
    a = np.asarray(x, dtype=np.float64)
    return _erf_each(a).astype(np.asarray(x).dtype if np.asarray(x).dtype.kind == "f" else np.float64)


def _erf(x):
    """erf of an array, or of a Tensor as a Tensor (so that a derivative using it can be differentiated)."""
    return x.erf() if _is_tensor(x) else _erf_values(x)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _log(x):
    return x.log() if _is_tensor(x) else np.log(x)


def _sin(x):
    return x.sin() if _is_tensor(x) else np.sin(x)


def _cos(x):
    return x.cos() if _is_tensor(x) else np.cos(x)


# Arrays and Tensors share these method names, so the rules below call methods: no dispatch.

def _sum(x, axis, keepdims):
    if type(x) is np.ndarray:
        return np.add.reduce(x, axis=axis, keepdims=keepdims)  # the C reduction, no Python wrapper
    return x.sum(axis=axis, keepdims=keepdims)


def _reshape(x, shape):
    return x.reshape(shape)


def _transpose(x, axes):
    if _is_tensor(x):  # Tensor.transpose(None) would read None as an axis: no axes means reverse them
        return x.transpose() if axes is None else x.transpose(axes)
    return x.transpose(axes)


def _broadcast_to(x, shape):
    if _is_tensor(x):
        return x.broadcast_to(shape)
    out = np.empty(shape, dtype=x.dtype)  # a writable copy: cheaper than np.broadcast_to's checks
    out[...] = x
    return out


def _mT(x):
    """Transpose of the last two axes (matrix transpose for stacks of matrices)."""
    if x.ndim == 2 and type(x) is np.ndarray:
        return x.T
    axes = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return _transpose(x, axes)


def _as_float(mask, like):
    return mask.astype(raw(like).dtype)


def _choose(mask, yes, no, like):
    """`yes` where mask holds, else `no`, in the dtype of `like` (a constant: no gradient)."""
    return np.where(mask, yes, no).astype(raw(like).dtype, copy=False)


def unbroadcast(g, shape: tuple):
    """Sum a gradient back to the shape of the input that was broadcast to make it."""
    extra = g.ndim - len(shape)
    if extra and g.shape[extra:] == shape:  # only leading axes were added (a bias, say)
        return _sum(g, tuple(range(extra)), False)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1
    )
    if axes:
        g = _sum(g, axes, True)
    return _reshape(g, shape) if g.shape != shape else g


def _keepdims_shape(shape: tuple, axis) -> tuple:
    if axis is None:
        return (1,) * len(shape)
    axes = (axis,) if np.ndim(axis) == 0 else axis  # an int or a numpy integer, else a tuple
    axes = {a % len(shape) for a in axes}
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _expand(g, shape: tuple, axis, keepdims: bool):
    """Undo a reduction: give every reduced element the upstream gradient of its result."""
    if not keepdims:
        g = _reshape(g, _keepdims_shape(shape, axis))
    return _broadcast_to(g, shape)


def _reduced_count(shape: tuple, axis) -> int:
    if axis is None:
        return math.prod(shape)
    axes = (axis,) if np.ndim(axis) == 0 else axis
    return math.prod(shape[a] for a in axes)


def _max_mask(x, out, axis, keepdims):
    """1/k at each of the k tied maxima of each reduced slice, 0 elsewhere."""
    x, out = raw(x), raw(out)
    if not keepdims:
        out = np.reshape(out, _keepdims_shape(x.shape, axis))
    mask = (x == out).astype(x.dtype)
    return mask / np.sum(mask, axis=axis, keepdims=True)


# -- forward helpers ---------------------------------------------------------------------

def _sig(x):
    """σ(x) of an array, or of a Tensor as a Tensor (so that a derivative using it can be differentiated)."""
    return x.sigmoid() if _is_tensor(x) else _sigmoid(x)


def _sigmoid(x):
    # 1/(1 + e^-x) for x >= 0 and e^x/(1 + e^x) for x < 0: never overflows, and keeps full
    # relative precision for negative x (0.5 * tanh(x/2) + 0.5 cancels to exactly 0 below -37).
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _leaky_relu(x, slope):
    return np.where(x > 0, x, x * x.dtype.type(slope))


def _clip(x, lo, hi):
    return np.clip(x, lo, hi) if (lo is not None or hi is not None) else x.copy()


def _clip_partial(x, out, lo, hi):
    x = raw(x)
    mask = np.ones(x.shape, dtype=bool)
    if lo is not None:
        mask &= x >= lo
    if hi is not None:
        mask &= x <= hi
    return mask.astype(x.dtype)


def _scatter_add(g, index, shape):
    """Zeros of `shape` with g added at x[index] (repeated indices add up)."""
    if isinstance(index, tuple) and len(index) == len(shape) and all(
            isinstance(i, np.ndarray) and i.dtype.kind in "iu" for i in index):
        # Integer arrays for every axis (e.g. picking each row's label): bincount is far
        # faster than np.add.at, and adds repeated positions the same way.
        flat = np.ravel_multi_index(np.broadcast_arrays(*index), shape, mode="wrap")
        summed = np.bincount(flat.ravel(), weights=np.broadcast_to(g, flat.shape).ravel(),
                             minlength=math.prod(shape))
        return summed.reshape(shape).astype(g.dtype, copy=False)
    result = np.zeros(shape, dtype=g.dtype)
    np.add.at(result, index, g)
    return result


# -- matmul, with numpy's 1-D rules ------------------------------------------------------

def _column(x):
    return _reshape(x, x.shape + (1,))


def _matmul_grad_a(g, a, b, out):
    if b.ndim == 1:                       # (..., n) @ (n,) -> (...)
        return _column(g) * b
    if a.ndim == 1:                       # (n,) @ (..., n, m) -> (..., m)
        return _reshape(b @ _column(g), b.shape[:-1])
    return g @ _mT(b)


def _matmul_grad_b(g, a, b, out):
    if (type(b) is np.ndarray and b.ndim == 2 and a.ndim == 2 and b.flags.f_contiguous
            and not b.flags.c_contiguous):
        # b is a transposed view (x @ W.T): give its gradient the same layout, so that W.grad,
        # after the transpose's backward, is row-major like W (updates on it are then fast).
        return (g.T @ a).T
    if b.ndim == 1:
        return _column(g) * a
    if a.ndim == 1:
        return _reshape(a, a.shape + (1,)) * _reshape(g, g.shape[:-1] + (1, g.shape[-1]))
    return _mT(a) @ g


def _matmul_factor_a(a, b, out):
    return raw(b).T if raw(b).ndim == 2 else None


def _matmul_factor_b(a, b, out):
    return raw(a).T if raw(a).ndim == 2 else None


# -- the table ---------------------------------------------------------------------------

ADD = Op("add", np.add, ("d(a+b)/da = 1", "d(a+b)/db = 1"), partials=(None, None), symbol="+")
SUB = Op("sub", np.subtract, ("d(a-b)/da = 1", "d(a-b)/db = -1"),
         partials=(None, lambda a, b, out: -1.0), symbol="-")
MUL = Op("mul", np.multiply, ("d(a*b)/da = b", "d(a*b)/db = a"),
         partials=(lambda a, b, out: b, lambda a, b, out: a), symbol="*")
DIV = Op("div", np.divide, ("d(a/b)/da = 1/b", "d(a/b)/db = -a/b^2"),
         partials=(lambda a, b, out: 1.0 / b, lambda a, b, out: -out / b), symbol="/")
POW = Op("pow", np.power, ("d(a^b)/da = b*a^(b-1)", "d(a^b)/db = a^b*ln(a)"),
         partials=(lambda a, b, out: b * a ** (b - 1.0), lambda a, b, out: out * _log(a)), symbol="**")
NEG = Op("neg", np.negative, ("d(-x)/dx = -1",), partials=(lambda x, out: -1.0,))
EXP = Op("exp", np.exp, ("d exp(x)/dx = exp(x)",), partials=(lambda x, out: out,))
LOG = Op("log", np.log, ("d ln(x)/dx = 1/x",), partials=(lambda x, out: 1.0 / x,))
LOG1P = Op("log1p", np.log1p, ("d ln(1+x)/dx = 1/(1+x)",), partials=(lambda x, out: 1.0 / (1.0 + x),))
SQRT = Op("sqrt", np.sqrt, ("d sqrt(x)/dx = 1/(2*sqrt(x))",), partials=(lambda x, out: 0.5 / out,))
ERF = Op("erf", _erf_values, ("d erf(x)/dx = 2/sqrt(pi) * exp(-x^2)",),
         partials=(lambda x, out: _TWO_OVER_SQRT_PI * _exp(-(x * x)),))
SIN = Op("sin", np.sin, ("d sin(x)/dx = cos(x)",), partials=(lambda x, out: _cos(x),))
COS = Op("cos", np.cos, ("d cos(x)/dx = -sin(x)",), partials=(lambda x, out: -_sin(x),))
ABS = Op("abs", np.abs, ("d|x|/dx = sign(x)",), partials=(lambda x, out: np.sign(raw(x)),))

# Activations. Their partials read the output where the derivative is a function of it, so that
# the debugger can measure them from a layer's output alone.
TANH = Op("tanh", np.tanh, ("d tanh(z)/dz = 1 - tanh(z)^2",), partials=(lambda x, out: 1.0 - out * out,),
          note="1 − tanh²(z) ≤ 1",
          activation=Activation("1 − tanh²(z), at most 1", max_derivative=1.0, saturates=True))
SIGMOID = Op("sigmoid", _sigmoid, ("d sigmoid(z)/dz = sigmoid(z)*(1 - sigmoid(z))",),
             partials=(lambda x, out: out * (1.0 - out),), note="σ'(z) ≤ 1/4",
             activation=Activation("σ'(z) = σ(1 − σ), at most 1/4", max_derivative=0.25, saturates=True))
RELU = Op("relu", lambda x: np.maximum(x, 0), ("d relu(z)/dz = 1 if z > 0 else 0",),
          partials=(lambda x, out: _as_float(raw(out) > 0, out),),   # relu(z) > 0 exactly where z > 0
          note="0 or 1", activation=Activation("ReLU'(z): 0 or 1", max_derivative=1.0, dead=True))
# The input's sign, not the output's: with a negative slope both sides of 0 give outputs above 0.
LEAKY_RELU = Op("leaky_relu", _leaky_relu, ("d leaky_relu(z)/dz = 1 if z > 0 else α",),
                partials=(lambda x, out, slope: _choose(raw(x) > 0, 1.0, slope, x),), note="1 or α",
                activation=Activation("LeakyReLU'(z): α or 1", max_derivative=1.0,
                                      params=(("negative_slope", 0.01),), reads_input=True))
SOFTSIGN = Op("softsign", lambda x: x / (1.0 + np.abs(x)), ("d softsign(z)/dz = 1/(1 + |z|)^2",),
              partials=(lambda x, out: (1.0 - out * np.sign(raw(out))) ** 2,),   # (1 − |out|)²
              note="(1 − |softsign(z)|)² ≤ 1",
              activation=Activation("softsign'(z) = 1/(1 + |z|)², at most 1", max_derivative=1.0, saturates=True))
# SiLU (swish), z·σ(z): its derivative needs the input. It peaks at 1.0998 (z ≈ 2.4), dips
# below 0 (to −0.0998 near z ≈ −2.4) and fades to 0 for very negative z, where a unit saturates.
SILU = Op("silu", lambda x: x * _sigmoid(x), ("d silu(z)/dz = sigmoid(z)*(1 + z*(1 - sigmoid(z)))",),
          partials=(lambda x, out: _sig(x) * (1.0 + x * (1.0 - _sig(x))),), note="σ(z)(1 + z(1 − σ(z))), at most 1.1",
          activation=Activation("SiLU'(z) = σ(z)(1 + z(1 − σ(z))), at most 1.0998", max_derivative=1.0998393201288648,
                                saturates=True, reads_input=True))

# GELU, z·Φ(z) with Φ the standard normal's distribution function (PyTorch's nn.GELU(), exact
# form): its derivative Φ(z) + z·φ(z) peaks at 1.1289 (z = √2), dips to −0.068 (z = −√2) and
# fades to 0 for very negative z, where a unit saturates.
GELU = Op("gelu", lambda x: 0.5 * x * (1.0 + _erf_values(x * _INV_SQRT2)), ("d gelu(z)/dz = Φ(z) + z·φ(z)",),
          partials=(lambda x, out: 0.5 * (1.0 + _erf(x * _INV_SQRT2)) + x * _INV_SQRT_2PI * _exp(-0.5 * (x * x)),),
          note="Φ(z) + z·φ(z), at most 1.13",
          activation=Activation("GELU'(z) = Φ(z) + zφ(z), at most 1.129", max_derivative=1.128904145185155,
                                saturates=True, reads_input=True))

# ELU (PyTorch's nn.ELU(alpha=1.0)): z for z > 0, α(e^z − 1) below. Its derivative is 1 above 0
# and α·e^z = elu(z) + α below, written from the output so that it can be differentiated again;
# for very negative z it fades to 0, where a unit saturates (its maximum is 1 for α ≤ 1).
def _elu(x, alpha):
    return np.where(x > 0, x, x.dtype.type(alpha) * np.expm1(np.minimum(x, 0)))


def _elu_partial(x, out, alpha):
    below = raw(x) <= 0
    return _as_float(~below, x) + _as_float(below, x) * (out + alpha)


ELU = Op("elu", _elu, ("d elu(z)/dz = 1 if z > 0 else α·e^z",), partials=(_elu_partial,),
         note="1 or α·e^z (≤ 1 for α ≤ 1)",
         activation=Activation("ELU'(z): 1, or α·e^z below 0", max_derivative=1.0, saturates=True,
                               params=(("alpha", 1.0),), reads_input=True))

CLIP = Op("clip", _clip, ("d clip(x)/dx = 1 inside [min, max], else 0",), partials=(_clip_partial,))
WHERE = Op("where", lambda a, b, cond: np.where(cond, a, b),
           ("d where(c, a, b)/da = 1 where c", "d where(c, a, b)/db = 1 where not c"),
           partials=(lambda a, b, out, cond: _as_float(cond, a), lambda a, b, out, cond: _as_float(~cond, b)))

MATMUL = Op("matmul", np.matmul, ("d(x@W)/dx = W^T", "d(x@W)/dW = x^T"),
            vjp=(_matmul_grad_a, _matmul_grad_b), factor=(_matmul_factor_a, _matmul_factor_b), symbol="@",
            chain=("{g} = {up} @ {other}ᵀ", "{g} = {other}ᵀ @ {up}"),
            rule="gradient passed on = upstream @ Wᵀ (to x), xᵀ @ upstream (to W)")


def _linear(x, w, b):
    out = x @ w.T
    out += b
    return out


def _rows(a):
    """A stack of vectors as one matrix: (..., n) -> (-1, n)."""
    return a if a.ndim == 2 else _reshape(a, (-1, a.shape[-1]))


# A layer's x Wᵀ + b as one op, as PyTorch's F.linear: the step a learner thinks of as "the layer".
LINEAR = Op("linear", _linear,
            ("d(xWᵀ+b)/dx = W", "d(xWᵀ+b)/dW = x (∂L/∂W = gᵀx)", "d(xWᵀ+b)/db = 1 (summed over the batch)"),
            vjp=(lambda g, x, w, b, out: g @ w,
                 lambda g, x, w, b, out: _mT(_rows(g)) @ _rows(x),
                 lambda g, x, w, b, out: _sum(_rows(g), 0, False)),
            factor=(lambda x, w, b, out: raw(w), lambda x, w, b, out: raw(x), lambda x, w, b, out: 1.0),
            chain=("{g} = {up} @ {w}", "{g} = ({up})ᵀ @ {x}", "{g} = {up} summed over the batch"),
            rule="gradient passed on = upstream @ W, upstreamᵀ @ x, Σ upstream", note="Wᵀ")
SUM = Op("sum", lambda x, axis, keepdims: np.add.reduce(x, axis=axis, keepdims=keepdims),
         ("d sum(x)/dx_i = 1: the gradient is copied to every summed element",),
         vjp=(lambda g, x, out, axis, keepdims: _expand(g, x.shape, axis, keepdims),),
         chain=("{g} = {up}, copied to every summed element",))
MEAN = Op("mean", lambda x, axis, keepdims:
          np.add.reduce(x, axis=axis, keepdims=keepdims) / _reduced_count(x.shape, axis),
          ("d mean(x)/dx_i = 1/n",),
          vjp=(lambda g, x, out, axis, keepdims:
               _expand(g, x.shape, axis, keepdims) * (1.0 / _reduced_count(x.shape, axis)),),
          chain=("{g} = {up} ÷ {n}, copied to every averaged element",))
MAX = Op("max", lambda x, axis, keepdims: np.maximum.reduce(x, axis=axis, keepdims=keepdims),
         ("d max(x)/dx_i = 1 at the maximum (split evenly between ties), 0 elsewhere",),
         vjp=(lambda g, x, out, axis, keepdims: _expand(g, x.shape, axis, keepdims) * _max_mask(x, out, axis, keepdims),),
         factor=(_max_mask,), chain=("{g} = {up} × mask (1 at the maximum, split between ties; 0 elsewhere)",))
RESHAPE = Op("reshape", np.reshape, ("reshape: the gradient is reshaped back",),
             vjp=(lambda g, x, out, shape: _reshape(g, x.shape),), chain=("{g} = {up} reshaped back to {shape}",))
TRANSPOSE = Op("transpose", np.transpose, ("transpose: the gradient is transposed back",),
               vjp=(lambda g, x, out, axes: _transpose(g, None if axes is None else tuple(np.argsort(axes))),),
               chain=("{g} = {up} transposed back ({up_shape} → {shape})",))
BROADCAST_TO = Op("broadcast_to", np.broadcast_to, ("broadcast: the gradient is summed over the copies",),
                  vjp=(lambda g, x, out, shape: g,), chain=("{g} = {up} summed over the copies",))
SCATTER_ADD = Op("scatter_add", _scatter_add, ("scatter: the gradient is gathered from the same places",),
                 vjp=(lambda g, x, out, index, shape: g[index],), chain=("{g} = {up} gathered from the same places",))
GETITEM = Op("getitem", lambda x, index: x[index],
             ("d x[i]/dx = 1 at the picked elements, 0 elsewhere",),
             vjp=(lambda g, x, out, index: _scatter_add_any(g, index, x.shape),),
             chain=("{g} = {up} put back at the picked elements, 0 elsewhere",))



def _cast_back(g, x, out, dtype):
    """The gradient of a float -> float cast is the upstream gradient cast back to the input's dtype."""
    if _is_tensor(g):
        from .tensor import _apply
        return g if g.data.dtype == x.dtype else _apply(CAST, g, attrs=(x.dtype,))
    return g.astype(x.dtype, copy=False)


# Float -> float only (x.float(), x.double(), x.to(dtype)): a cast to an integer dtype cuts the graph.
CAST = Op("cast", lambda x, dtype: x.astype(dtype), ("d cast(x)/dx = 1 (the gradient is cast back to x's dtype)",),
          vjp=(_cast_back,), chain=("{g} = {up} cast back to the input's dtype",))


def _scatter_add_any(g, index, shape):
    if _is_tensor(g):
        from .tensor import _apply
        return _apply(SCATTER_ADD, g, attrs=(index, shape))
    return _scatter_add(g, index, shape)


# -- convolution and pooling over N×C×H×W, through im2col and one BLAS product -------------------
# attrs: stride, padding, dilation as (h, w) pairs. The three conv ops are closed under
# differentiation: the input's gradient is a transposed conv (conv2d_input), the weight's a
# correlation of input and upstream (conv2d_weight), and each of those has the others as its VJPs,
# so a conv's backward pass can itself be differentiated.

def _windows(xp, kernel, stride, dilation):
    """The (N, C, OH, OW, kh, kw) view of every window of a padded batch (no copy)."""
    n, c, h, w = xp.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    s = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw), writeable=False)


def _pad(x, padding, value=0.0):
    ph, pw = padding
    if not (ph or pw):
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _im2col(x, kernel, stride, padding, dilation):
    """Rows (N·OH·OW, C·kh·kw): one per output position, the window it reads."""
    win = _windows(_pad(x, padding), kernel, stride, dilation)
    n, c, oh, ow, kh, kw = win.shape
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw), (oh, ow)


def _conv2d(x, w, stride, padding, dilation):
    cols, (oh, ow) = _im2col(x, w.shape[2:], stride, padding, dilation)
    out = cols @ w.reshape(w.shape[0], -1).T
    return np.ascontiguousarray(out.reshape(x.shape[0], oh, ow, w.shape[0]).transpose(0, 3, 1, 2))


def _conv2d_input(g, w, stride, padding, dilation, x_shape):
    """The transposed conv: each output position's upstream gradient spread back over its window."""
    n, o, oh, ow = g.shape
    _, c, kh, kw = w.shape
    cols = (g.transpose(0, 2, 3, 1).reshape(-1, o) @ w.reshape(o, -1)).reshape(n, oh, ow, c, kh, kw)
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    gx = np.zeros((n, c, x_shape[2] + 2 * ph, x_shape[3] + 2 * pw), dtype=np.result_type(g, w))
    for i in range(kh):   # kh·kw strided adds: the windows overlap, so no single scatter
        for j in range(kw):
            gx[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += \
                cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return gx[:, :, ph:ph + x_shape[2], pw:pw + x_shape[3]].copy() if (ph or pw) else gx


def _conv2d_weight(x, g, stride, padding, dilation, w_shape):
    cols, _ = _im2col(x, w_shape[2:], stride, padding, dilation)
    return (g.transpose(1, 0, 2, 3).reshape(g.shape[1], -1) @ cols).reshape(w_shape)


def _conv_call(op, fn, a, b, attrs):
    """An op's numpy kernel on arrays; the op itself on Tensors (create_graph: recorded)."""
    if _is_tensor(a) or _is_tensor(b):
        from .tensor import _apply, _lift
        return _apply(op, _lift(a, None), _lift(b, None), attrs=attrs)
    return fn(a, b, *attrs)


def _c_in(g, w, attrs, x_shape):
    return _conv_call(CONV2D_INPUT, _conv2d_input, g, w, (*attrs, tuple(x_shape)))


def _c_w(x, g, attrs, w_shape):
    return _conv_call(CONV2D_WEIGHT, _conv2d_weight, x, g, (*attrs, tuple(w_shape)))


def _c(x, w, attrs):
    return _conv_call(CONV2D, _conv2d, x, w, attrs)


_CONV_CHAIN = ("{g} = transposed conv of {up} with the kernel (each window's gradient spread back)",
               "{g} = correlation of the input {x} with {up}")
CONV2D = Op("conv2d", _conv2d, ("d conv(x, W)/dx: the transposed conv with W", "d conv(x, W)/dW: x's windows"),
            vjp=(lambda g, x, w, out, *a: _c_in(g, w, a, x.shape),
                 lambda g, x, w, out, *a: _c_w(x, g, a, w.shape)),
            chain=_CONV_CHAIN, rule="gradient passed on = upstream conv-transposed with W (to x), "
                                    "x's windows × upstream (to W)", note="Wᵀ, window by window")
CONV2D_INPUT = Op("conv2d_input", _conv2d_input,
                  ("d convᵀ(g, W)/dg: the conv with W", "d convᵀ(g, W)/dW: the upstream's windows × g"),
                  vjp=(lambda G, g, w, out, *a: _c(G, w, a[:3]),
                       lambda G, g, w, out, *a: _c_w(G, g, a[:3], w.shape)),
                  chain=("{g} = conv of {up} with the kernel", "{g} = correlation of {up} with {x}"))
CONV2D_WEIGHT = Op("conv2d_weight", _conv2d_weight,
                   ("d corr(x, g)/dx: transposed conv of g", "d corr(x, g)/dg: the conv of x"),
                   vjp=(lambda G, x, g, out, *a: _c_in(g, G, a[:3], x.shape),
                        lambda G, x, g, out, *a: _c(x, G, a[:3])),
                   chain=("{g} = transposed conv of {other} with {up}", "{g} = conv of {x} with {up}"))


def _pool_index(x, kernel, stride, padding):
    """Each max-pool window's argmax as indices into x (the first of ties, as PyTorch)."""
    win = _windows(_pad(x, padding, -np.inf), kernel, stride, (1, 1))
    n, c, oh, ow, kh, kw = win.shape
    flat = win.reshape(n, c, oh, ow, kh * kw).argmax(axis=-1)
    rows = np.arange(oh)[:, None] * stride[0] + flat // kw - padding[0]
    cols = np.arange(ow)[None, :] * stride[1] + flat % kw - padding[1]
    return (np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols)


def _maxpool2d(x, kernel, stride, padding):
    win = _windows(_pad(x, padding, -np.inf), kernel, stride, (1, 1))
    return np.maximum.reduce(win.reshape(*win.shape[:4], -1), axis=-1)


def _maxpool2d_grad(g, x, kernel, stride, padding):
    index = tuple(np.broadcast_arrays(*_pool_index(raw(x), kernel, stride, padding)))
    return _scatter_add_any(g, index, x.shape)


MAXPOOL2D = Op("max_pool2d", _maxpool2d, ("d maxpool(x)/dx = 1 at each window's maximum (its first), 0 elsewhere",),
               vjp=(lambda g, x, out, *a: _maxpool2d_grad(g, x, *a),),
               chain=("{g} = {up} put back at each window's maximum, 0 elsewhere",))


def _avgpool2d(x, kernel, stride, padding):
    win = _windows(_pad(x, padding), kernel, stride, (1, 1))
    return np.add.reduce(win.reshape(*win.shape[:4], -1), axis=-1) * (1.0 / (kernel[0] * kernel[1]))


def _avgpool2d_input(g, kernel, stride, padding, x_shape):
    """The average pool's adjoint: each window's gradient, ÷ its size, spread back over it."""
    n, c, oh, ow = g.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    part = g * (1.0 / (kh * kw))
    gx = np.zeros((n, c, x_shape[2] + 2 * ph, x_shape[3] + 2 * pw), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            gx[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += part
    return gx[:, :, ph:ph + x_shape[2], pw:pw + x_shape[3]].copy() if (ph or pw) else gx


def _pool_call(op, fn, a, attrs):
    if _is_tensor(a):
        from .tensor import _apply
        return _apply(op, a, attrs=attrs)
    return fn(a, *attrs)


AVGPOOL2D = Op("avg_pool2d", _avgpool2d, ("d avgpool(x)/dx = 1/(kh·kw) over each window",),
               vjp=(lambda g, x, out, *a: _pool_call(AVGPOOL2D_INPUT, _avgpool2d_input, g, (*a, tuple(x.shape))),),
               chain=("{g} = {up} ÷ the window's size, spread back over each window",))
AVGPOOL2D_INPUT = Op("avg_pool2d_input", _avgpool2d_input, ("d avgpoolᵀ(g)/dg: the average pool",),
                     vjp=(lambda G, g, out, *a: _pool_call(AVGPOOL2D, _avgpool2d, G, a[:3]),),
                     chain=("{g} = the average pool of {up}",))


# The debugger's fork in front of a layer: the layer reads a node of its own holding the same
# array, so that node's gradient is the layer's own share of ∂L/∂x and x's the whole (x's other
# paths added). Never traced: a model's own ops do not include it.
BRANCH = Op("branch", lambda x: x, ("d x/dx = 1 (the same values, read by one layer)",), partials=(None,))

# Every op above, in the order defined; the activations among them; each by name.
PRIMITIVES = tuple(op for op in tuple(globals().values()) if isinstance(op, Op))
ACTIVATION_OPS = tuple(op for op in PRIMITIVES if op.activation is not None)
BY_NAME = {op.name: op for op in PRIMITIVES}
