"""Every primitive's gradient against central finite differences of a plain-numpy reference.

Each check projects the output on a fixed random R, so one scalar sum(out * R) tests the whole
Jacobian; the reference gradient is central differences (float64, eps 1e-6) of the same
projection of a numpy implementation written here, never the engine's own backward.
"""
from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import calcml as cm
import calcml.nn.functional as F

from fd import check_grad

SHAPES = [(), (3,), (2, 3), (1, 3), (2, 1), (2, 3, 4)]


def _broadcastable(a, b) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


PAIRS = [(a, b) for a in SHAPES for b in SHAPES if _broadcastable(a, b)]


def values(shape, domain: str, rng) -> np.ndarray:
    """Random float64 values for a domain where the function is smooth."""
    if domain == "any":
        return rng.standard_normal(shape)
    if domain == "pos":                       # log, sqrt, base of pow, ...
        return rng.uniform(0.5, 2.0, shape)
    if domain == "nonzero":                   # denominators
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    if domain == "away":                      # relu / abs / leaky_relu: not near the kink at 0
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 2.0, shape)
    if domain == "gt-1":                      # log1p
        return rng.uniform(-0.5, 2.0, shape)
    if domain == "expo":                      # exponents
        return rng.uniform(-1.5, 1.5, shape)
    raise ValueError(domain)


def _id(v):
    return str(v).replace(" ", "")


# -- binary ops, every broadcastable pair of shapes ----------------------------------------------

BINARY = {
    "add": (lambda a, b: a + b, np.add, "any", "any"),
    "sub": (lambda a, b: a - b, np.subtract, "any", "any"),
    "mul": (lambda a, b: a * b, np.multiply, "any", "any"),
    "div": (lambda a, b: a / b, np.divide, "any", "nonzero"),
    "pow": (lambda a, b: a ** b, np.power, "pos", "expo"),
}
MODES = ["grad-both", "backward-both", "grad-left", "grad-right"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shapes", PAIRS, ids=_id)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_broadcasting(name, shapes, mode):
    cm_fn, np_fn, dom_a, dom_b = BINARY[name]
    rng = np.random.default_rng(zlib.crc32(repr((name, shapes)).encode()))
    a, b = values(shapes[0], dom_a, rng), values(shapes[1], dom_b, rng)
    via, which = mode.split("-")
    wrt = {"both": [0, 1], "left": [0], "right": [1]}[which]
    check_grad(cm_fn, np_fn, [a, b], wrt=wrt, via=via)


def test_pairs_cover_the_interesting_broadcasts():
    assert ((3,), (2, 1)) in PAIRS and ((2, 1), (1, 3)) in PAIRS and ((), (2, 3, 4)) in PAIRS
    assert ((2, 3, 4), (2, 3)) not in PAIRS
    assert len(PAIRS) == 28  # 36 ordered pairs less (2,3,4) against (3,), (2,3), (1,3), (2,1) both ways


def test_same_tensor_on_both_sides():
    for name, (cm_fn, np_fn, dom, _) in BINARY.items():
        x = values((2, 3), dom, np.random.default_rng(1))
        check_grad(lambda t: cm_fn(t, t), lambda a: np_fn(a, a), [x])


# -- Python scalars and numpy arrays on either side --------------------------------------------

ARR_FOR = {(): (2, 3), (3,): (2, 3), (2, 3): (3,), (1, 3): (2, 1), (2, 1): (1, 3), (2, 3, 4): (3, 4)}

MIXED = {
    # name: (engine fn(x, arr), numpy fn(x, arr), domain of x, domain of arr)
    "2.0 * x": (lambda x, c: 2.0 * x, lambda x, c: 2.0 * x, "any", "any"),
    "x * 2": (lambda x, c: x * 2, lambda x, c: x * 2, "any", "any"),
    "np.float64(2) * x": (lambda x, c: np.float64(2.5) * x, lambda x, c: 2.5 * x, "any", "any"),
    "x + 1.5": (lambda x, c: x + 1.5, lambda x, c: x + 1.5, "any", "any"),
    "1.5 + x": (lambda x, c: 1.5 + x, lambda x, c: 1.5 + x, "any", "any"),
    "x - 0.5": (lambda x, c: x - 0.5, lambda x, c: x - 0.5, "any", "any"),
    "0.5 - x": (lambda x, c: 0.5 - x, lambda x, c: 0.5 - x, "any", "any"),
    "x / 4.0": (lambda x, c: x / 4.0, lambda x, c: x / 4.0, "any", "any"),
    "4.0 / x": (lambda x, c: 4.0 / x, lambda x, c: 4.0 / x, "nonzero", "any"),
    "1 / x": (lambda x, c: 1 / x, lambda x, c: 1 / x, "nonzero", "any"),
    "x ** 2": (lambda x, c: x ** 2, lambda x, c: x ** 2, "any", "any"),
    "x ** 3": (lambda x, c: x ** 3, lambda x, c: x ** 3, "any", "any"),
    "x ** 0.5": (lambda x, c: x ** 0.5, lambda x, c: x ** 0.5, "pos", "any"),
    "x ** -1.5": (lambda x, c: x ** -1.5, lambda x, c: x ** -1.5, "pos", "any"),
    "3 ** x": (lambda x, c: 3 ** x, lambda x, c: 3.0 ** x, "any", "any"),
    "0.5 ** x": (lambda x, c: 0.5 ** x, lambda x, c: 0.5 ** x, "any", "any"),
    "x + arr": (lambda x, c: x + c, lambda x, c: x + c, "any", "any"),
    "arr + x": (lambda x, c: c + x, lambda x, c: c + x, "any", "any"),
    "x - arr": (lambda x, c: x - c, lambda x, c: x - c, "any", "any"),
    "arr - x": (lambda x, c: c - x, lambda x, c: c - x, "any", "any"),
    "x * arr": (lambda x, c: x * c, lambda x, c: x * c, "any", "any"),
    "arr * x": (lambda x, c: c * x, lambda x, c: c * x, "any", "any"),
    "x / arr": (lambda x, c: x / c, lambda x, c: x / c, "any", "nonzero"),
    "arr / x": (lambda x, c: c / x, lambda x, c: c / x, "nonzero", "any"),
    "x ** arr": (lambda x, c: x ** c, lambda x, c: x ** c, "pos", "expo"),
    "arr ** x": (lambda x, c: c ** x, lambda x, c: c ** x, "any", "pos"),
}


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("name", list(MIXED))
def test_scalars_and_arrays_on_either_side(name, shape):
    cm_fn, np_fn, dom_x, dom_c = MIXED[name]
    rng = np.random.default_rng(7)
    x = values(shape, dom_x, rng)
    c = values(ARR_FOR[shape], dom_c, rng)   # a plain numpy array, never a Tensor
    check_grad(lambda t: cm_fn(t, c), lambda a: np_fn(a, c), [x])
    check_grad(lambda t: cm_fn(t, c), lambda a: np_fn(a, c), [x], via="backward")


def test_integer_numpy_array_operand():
    x = np.random.default_rng(0).standard_normal((2, 3))
    k = np.array([1, 2, 3])
    check_grad(lambda t: t * k - k / (t * t + 1.0), lambda a: a * k - k / (a * a + 1.0), [x])


# -- matmul ----------------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((2, 3), (3, 4)),          # 2-D
    ((1, 3), (3, 1)),
    ((3,), (3, 4)),            # 1-D on the left
    ((2, 3), (3,)),            # 1-D on the right
    ((3,), (3,)),              # dot product -> ()
    ((2, 3, 4), (4, 5)),       # batched @ matrix
    ((4, 5), (2, 5, 3)),       # matrix @ batched
    ((2, 3, 4), (2, 4, 5)),    # batched @ batched
    ((1, 3, 4), (2, 4, 5)),    # broadcast batch dims
    ((2, 1, 3, 4), (5, 4, 2)), # (2,1) x (5,) batch -> (2,5)
    ((4,), (2, 4, 5)),         # 1-D @ batched
    ((2, 3, 4), (4,)),         # batched @ 1-D
    ((3,), (2, 1, 3, 2)),      # 1-D @ 4-D
]


@pytest.mark.parametrize("via", ["grad", "backward"])
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=_id)
def test_matmul(shapes, via):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    check_grad(lambda x, y: x @ y, np.matmul, [a, b], via=via)
    check_grad(lambda x, y: x @ y, np.matmul, [a, b], wrt=[0])
    check_grad(lambda x, y: x @ y, np.matmul, [a, b], wrt=[1])


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=_id)
def test_matmul_with_numpy_arrays(shapes):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    check_grad(lambda x: x @ b, lambda x: x @ b, [a])     # Tensor @ ndarray
    check_grad(lambda y: a @ y, lambda y: a @ y, [b])     # ndarray @ Tensor (__rmatmul__)


def test_matmul_same_matrix_twice():
    A = np.random.default_rng(5).standard_normal((3, 3))
    check_grad(lambda x: x @ x @ x, lambda x: x @ x @ x, [A])
    check_grad(lambda x: x.T @ x, lambda x: x.T @ x, [A])


# -- unary ops, every shape ------------------------------------------------------------------

def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _away_from(x, points, gap=1e-3):
    for p in points:
        x = np.where(np.abs(x - p) < gap, p + gap * 2 * np.sign(x - p + 1e-300), x)
    return x


UNARY = {
    "neg": (lambda x: -x, np.negative, "any"),
    "pos": (lambda x: +x * 1.0, lambda x: x * 1.0, "any"),
    "exp": (lambda x: x.exp(), np.exp, "any"),
    "log": (lambda x: x.log(), np.log, "pos"),
    "log1p": (lambda x: x.log1p(), np.log1p, "gt-1"),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, "pos"),
    "abs": (lambda x: x.abs(), np.abs, "away"),
    "tanh": (lambda x: x.tanh(), np.tanh, "any"),
    "sigmoid": (lambda x: x.sigmoid(), _np_sigmoid, "any"),
    "relu": (lambda x: x.relu(), lambda x: np.maximum(x, 0.0), "away"),
    "clip(-0.5,0.5)": (lambda x: x.clip(-0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), "clip"),
    "clip(min=0.2)": (lambda x: x.clip(min=0.2), lambda x: np.maximum(x, 0.2), "clip"),
    "clamp(max=-0.1)": (lambda x: x.clamp(max=-0.1), lambda x: np.minimum(x, -0.1), "clip"),
    "clip()": (lambda x: x.clip(), lambda x: x, "any"),
    "leaky_relu": (lambda x: cm.leaky_relu(x), lambda x: np.where(x > 0, x, 0.01 * x), "away"),
    "leaky_relu(0.2)": (lambda x: x.leaky_relu(0.2), lambda x: np.where(x > 0, x, 0.2 * x), "away"),
    "softplus": (lambda x: cm.softplus(x), lambda x: np.logaddexp(0.0, x), "any"),
    "softplus-method": (lambda x: x.softplus(), lambda x: np.log1p(np.exp(x)), "any"),
    "F.relu": (lambda x: F.relu(x), lambda x: np.maximum(x, 0.0), "away"),
    "F.sigmoid": (lambda x: F.sigmoid(x), _np_sigmoid, "any"),
    "F.tanh": (lambda x: F.tanh(x), np.tanh, "any"),
    "F.softplus": (lambda x: F.softplus(x), lambda x: np.logaddexp(0.0, x), "any"),
    "F.leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x), "away"),
}


def unary_values(shape, domain, rng):
    if domain == "clip":
        x = 1.5 * rng.standard_normal(shape)
        return _away_from(x, [-0.5, 0.5, 0.2, -0.1])
    return values(shape, domain, rng)


@pytest.mark.parametrize("shape", SHAPES, ids=_id)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name, shape):
    cm_fn, np_fn, domain = UNARY[name]
    x = unary_values(shape, domain, np.random.default_rng(11))
    check_grad(cm_fn, np_fn, [x])
    check_grad(cm_fn, np_fn, [x], via="backward")


def test_unary_large_magnitudes():
    # far from 0, where naive formulas overflow; the gradients must stay exact and finite
    x = np.array([-30.0, -8.0, 8.0, 30.0])
    check_grad(lambda t: t.sigmoid(), _np_sigmoid, [x])
    check_grad(lambda t: t.tanh(), np.tanh, [x])
    check_grad(lambda t: cm.softplus(t), lambda a: np.logaddexp(0.0, a), [x])


# -- reductions: every axis (None, single, negative, tuples) x keepdims --------------------------

def axis_options(ndim):
    options = [None] + list(range(ndim)) + list(range(-ndim, 0))
    for r in range(2, ndim + 1):
        for combo in itertools.combinations(range(ndim), r):
            options.append(combo)
            options.append(tuple(a - ndim for a in combo))
    if ndim >= 2:
        options.append((0, -1))
    return options


REDUCTION_CASES = [(shape, axis) for shape in [(3,), (2, 3), (2, 3, 4)] for axis in axis_options(len(shape))]
REDUCTIONS = {
    "sum": (lambda x, axis, k: x.sum(axis=axis, keepdims=k), np.sum),
    "mean": (lambda x, axis, k: x.mean(axis=axis, keepdims=k), np.mean),
    "max": (lambda x, axis, k: x.max(axis=axis, keepdims=k), np.max),
}


def distinct_values(shape, rng):
    """No ties, and neighbours far apart compared with eps: max is differentiable there."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.5 + rng.uniform(0.0, 0.1, n) - n / 4).reshape(shape)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("case", REDUCTION_CASES, ids=_id)
@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reductions(name, case, keepdims):
    shape, axis = case
    cm_fn, np_fn = REDUCTIONS[name]
    x = distinct_values(shape, np.random.default_rng(len(shape)))
    check_grad(lambda t: cm_fn(t, axis, keepdims), lambda a: np_fn(a, axis=axis, keepdims=keepdims), [x])


def test_reduction_axis_as_list_and_numpy_integer():
    x = distinct_values((2, 3, 4), np.random.default_rng(0))
    check_grad(lambda t: t.sum(axis=[0, 2]), lambda a: a.sum(axis=(0, 2)), [x])
    check_grad(lambda t: t.mean(axis=[-1, 0], keepdims=True), lambda a: a.mean(axis=(-1, 0), keepdims=True), [x])
    # numpy integers (e.g. from np.argmax or np.arange) are valid axes for numpy's forward
    for axis in (np.int64(1), np.intp(-1)):
        for keepdims in (False, True):
            check_grad(lambda t: t.sum(axis=axis, keepdims=keepdims), lambda a: a.sum(axis=axis, keepdims=keepdims), [x])
            check_grad(lambda t: t.mean(axis=axis, keepdims=keepdims), lambda a: a.mean(axis=axis, keepdims=keepdims), [x])
            check_grad(lambda t: t.max(axis=axis, keepdims=keepdims), lambda a: a.max(axis=axis, keepdims=keepdims), [x])


def test_reductions_of_a_scalar():
    x = np.array(1.7)
    for name, (cm_fn, np_fn) in REDUCTIONS.items():
        check_grad(lambda t: cm_fn(t, None, False), lambda a: np_fn(a), [x])


# -- max: ties share the gradient evenly -------------------------------------------------------

def _max_grad(x, axis=None, keepdims=False, upstream=None):
    t = cm.tensor(x, requires_grad=True)
    y = t.max(axis=axis, keepdims=keepdims)
    if upstream is None:
        y.sum().backward()
    else:
        y.backward(np.asarray(upstream, dtype=np.float64).reshape(y.shape))
    return t.grad


def test_max_ties_split_evenly_along_an_axis():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, -1.0, 0.0]])
    g = np.array([2.0, 6.0, 1.5])
    expected = np.array([[0.0, 1.0, 1.0], [2.0, 2.0, 2.0], [1.5, 0.0, 0.0]])
    for keepdims in (False, True):
        for axis in (1, -1):
            np.testing.assert_array_equal(_max_grad(x, axis, keepdims, g), expected)


def test_max_ties_along_axis_0_and_over_everything():
    x = np.array([[4.0, 1.0, 7.0], [4.0, 2.0, 7.0], [0.0, 2.0, 7.0]])
    g = np.array([3.0, 4.0, 9.0])
    expected = np.array([[1.5, 0.0, 3.0], [1.5, 2.0, 3.0], [0.0, 2.0, 3.0]])
    np.testing.assert_array_equal(_max_grad(x, 0, False, g), expected)
    np.testing.assert_array_equal(_max_grad(x, -2, True, g), expected)
    # axis=None: the three 7s share the single upstream gradient
    np.testing.assert_allclose(_max_grad(x, None, False, 6.0), np.where(x == 7.0, 2.0, 0.0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(_max_grad(x, None, True, 6.0), np.where(x == 7.0, 2.0, 0.0), rtol=0, atol=1e-15)


def test_max_ties_over_a_tuple_of_axes():
    x = np.zeros((2, 3, 4))
    x[0, 1, 2] = x[0, 2, 0] = x[0, 0, 3] = 5.0      # three tied maxima in slice 0
    x[1, 0, 0] = 1.0                                 # a single maximum in slice 1
    g = np.array([6.0, 4.0])
    grad = _max_grad(x, (1, 2), False, g)
    expected = np.zeros((2, 3, 4))
    expected[0, 1, 2] = expected[0, 2, 0] = expected[0, 0, 3] = 2.0
    expected[1, 0, 0] = 4.0
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(_max_grad(x, (-1, -2), True, g), expected, rtol=0, atol=1e-15)


def test_max_all_equal_and_ties_in_cm_grad():
    x = cm.tensor(np.full((2, 4), 3.0), requires_grad=True)
    (g,) = cm.grad(x.max(axis=1).sum(), [x])
    np.testing.assert_array_equal(g.data, np.full((2, 4), 0.25))
    (g,) = cm.grad(x.max(), [x])
    np.testing.assert_array_equal(g.data, np.full((2, 4), 1.0 / 8))
    assert x.grad is None


# -- shape ops ---------------------------------------------------------------------------------

RESHAPES = [
    ((2, 3), lambda t: t.reshape(3, 2), lambda a: a.reshape(3, 2)),
    ((2, 3), lambda t: t.reshape((6,)), lambda a: a.reshape(6)),
    ((2, 3), lambda t: t.reshape(-1), lambda a: a.reshape(-1)),
    ((2, 3), lambda t: t.reshape([1, 6, 1]), lambda a: a.reshape(1, 6, 1)),
    ((2, 3, 4), lambda t: t.reshape(4, -1), lambda a: a.reshape(4, -1)),
    ((), lambda t: t.reshape(1, 1), lambda a: a.reshape(1, 1)),
    ((1, 3), lambda t: t.reshape(()), None),
]


@pytest.mark.parametrize("case", range(len(RESHAPES)))
def test_reshape(case):
    shape, cm_fn, np_fn = RESHAPES[case]
    if np_fn is None:  # (1, 3) -> () is invalid: numpy's error, raised as ValueError
        with pytest.raises(ValueError, match="reshape"):
            cm_fn(cm.tensor(np.ones(shape), requires_grad=True))
        return
    x = np.random.default_rng(0).standard_normal(shape)
    check_grad(lambda t: cm_fn(t) * 1.0, np_fn, [x])


TRANSPOSES = [
    ((2, 3), lambda t: t.transpose(), lambda a: a.transpose()),
    ((2, 3), lambda t: t.T, lambda a: a.T),
    ((3,), lambda t: t.T, lambda a: a.T),
    ((2, 3, 4), lambda t: t.transpose(), lambda a: a.transpose()),
    ((2, 3, 4), lambda t: t.T, lambda a: a.T),
    ((2, 3, 4), lambda t: t.transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)),
    ((2, 3, 4), lambda t: t.transpose((2, 0, 1)), lambda a: a.transpose(2, 0, 1)),
    ((2, 3, 4), lambda t: t.transpose([1, 2, 0]), lambda a: a.transpose(1, 2, 0)),
    ((2, 3, 4), lambda t: t.transpose(-1, 0, -2), lambda a: a.transpose(2, 0, 1)),
    ((2, 3), lambda t: t.transpose(1, 0), lambda a: a.transpose(1, 0)),
]


@pytest.mark.parametrize("case", range(len(TRANSPOSES)))
def test_transpose(case):
    shape, cm_fn, np_fn = TRANSPOSES[case]
    x = np.random.default_rng(1).standard_normal(shape)
    check_grad(cm_fn, np_fn, [x])
    check_grad(cm_fn, np_fn, [x], via="backward")


BROADCASTS = [((), (2, 3)), ((3,), (2, 3)), ((2, 1), (2, 3)), ((1, 3), (4, 2, 3)), ((2, 1), (3, 2, 5)),
              ((2, 3), (2, 3)), ((3,), (2, 2, 3))]


@pytest.mark.parametrize("shapes", BROADCASTS, ids=_id)
def test_broadcast_to(shapes):
    src, dst = shapes
    x = np.random.default_rng(2).standard_normal(src)
    check_grad(lambda t: t.broadcast_to(dst), lambda a: np.broadcast_to(a, dst), [x])
    check_grad(lambda t: t.broadcast_to(list(dst)), lambda a: np.broadcast_to(a, dst), [x], via="backward")


INDEXES = {
    "int": (1,),
    "negative int": (-1,),
    "slice": (slice(1, None),),
    "step slice": (slice(None), slice(None, None, 2)),
    "negative step": (slice(None, None, -1),),
    "ellipsis": (Ellipsis, 1),
    "newaxis": (None, slice(None), 0),
    "int array": (np.array([0, 1]),),
    "repeated int array": (np.array([1, 1, 0, 1]),),
    "list": ([1, 0, 1],),
    "pair of arrays": (np.array([0, 1, 0, 0]), np.array([2, 2, 2, 0])),
    "array and slice": (np.array([1, 1]), slice(0, 2)),
    "2-D int array": (np.array([[0, 1], [1, 1]]),),
    "bool mask": ("mask",),
}


@pytest.mark.parametrize("name", list(INDEXES))
def test_indexing(name):
    x = np.random.default_rng(3).standard_normal((2, 3, 4))
    index = INDEXES[name]
    if name == "bool mask":
        index = x > 0.2
    elif len(index) == 1:
        index = index[0]
    np_index = np.asarray(index) if isinstance(index, list) else index
    check_grad(lambda t: t[index], lambda a: a[np_index], [x])
    check_grad(lambda t: t[index], lambda a: a[np_index], [x], via="backward")


def test_repeated_indices_accumulate_exactly():
    x = cm.tensor(np.arange(5.0), requires_grad=True)
    idx = np.array([3, 1, 3, 3, 0, 1])
    x[idx].sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 0.0, 3.0, 0.0])
    # with a weighted upstream gradient, and via cm.grad
    w = np.array([1.0, 10.0, 100.0, 1000.0, 0.5, 0.25])
    (g,) = cm.grad((x[idx] * w).sum(), [x])
    np.testing.assert_array_equal(g.data, [0.5, 10.25, 0.0, 1101.0, 0.0])
    # a Tensor used as an index works like its integer array
    (g,) = cm.grad(x[cm.tensor(idx)].sum(), [x])
    np.testing.assert_array_equal(g.data, [1.0, 2.0, 0.0, 3.0, 0.0])


def test_getitem_on_2d_rows_repeat():
    x = np.random.default_rng(4).standard_normal((3, 2))
    idx = np.array([2, 2, 0, 2])
    check_grad(lambda t: t[idx] * t[idx], lambda a: a[idx] * a[idx], [x])


WHERE_SHAPES = [((2, 3), (2, 3), (2, 3)), ((2, 3), (3,), (2, 1)), ((2, 3), (), (2, 3)), ((3,), (2, 3), (1, 3)),
                ((2, 1), (1, 3), ())]


@pytest.mark.parametrize("shapes", WHERE_SHAPES, ids=_id)
def test_where(shapes):
    cshape, ashape, bshape = shapes
    rng = np.random.default_rng(5)
    cond = rng.random(cshape) > 0.5
    a, b = rng.standard_normal(ashape), rng.standard_normal(bshape)
    check_grad(lambda s, t: cm.where(cond, s, t), lambda s, t: np.where(cond, s, t), [a, b])
    check_grad(lambda s, t: cm.where(cond, s, t), lambda s, t: np.where(cond, s, t), [a, b], wrt=[0])
    check_grad(lambda s, t: cm.where(cond, s, t), lambda s, t: np.where(cond, s, t), [a, b], wrt=[1], via="backward")


def test_where_with_scalars_and_tensor_condition():
    x = np.random.default_rng(6).standard_normal((2, 3))
    check_grad(lambda t: cm.where(t > 0, t, 0.0), lambda a: np.where(a > 0, a, 0.0), [x])
    check_grad(lambda t: cm.where(t.data < 0, -1.0, t * t), lambda a: np.where(a < 0, -1.0, a * a), [x])
    cond = cm.tensor([1.0, 0.0, 2.0])      # a float tensor used as the condition: nonzero is True
    check_grad(lambda t: cm.where(cond, t, 2 * t), lambda a: np.where([True, False, True], a, 2 * a), [x[0]])


# -- composites --------------------------------------------------------------------------------

def np_logsumexp(x, axis, keepdims):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


def np_softmax(x, axis):
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def np_log_softmax(x, axis):
    return x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("case", REDUCTION_CASES, ids=_id)
def test_logsumexp(case, keepdims):
    shape, axis = case
    x = 2 * np.random.default_rng(8).standard_normal(shape)
    check_grad(lambda t: cm.logsumexp(t, axis=axis, keepdims=keepdims), lambda a: np_logsumexp(a, axis, keepdims), [x])


def test_logsumexp_method_and_functional_forms():
    x = np.random.default_rng(9).standard_normal((2, 3, 4))
    check_grad(lambda t: t.logsumexp(), lambda a: np_logsumexp(a, -1, False), [x])
    check_grad(lambda t: t.logsumexp(axis=0, keepdims=True), lambda a: np_logsumexp(a, 0, True), [x])
    check_grad(lambda t: F.logsumexp(t, dim=1, keepdim=True), lambda a: np_logsumexp(a, 1, True), [x])


SOFTMAX_CASES = [(shape, axis) for shape in [(3,), (2, 3), (2, 3, 4)]
                 for axis in list(range(len(shape))) + list(range(-len(shape), 0))]


@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=_id)
def test_softmax_and_log_softmax(case):
    shape, axis = case
    x = 2 * np.random.default_rng(10).standard_normal(shape)
    check_grad(lambda t: cm.softmax(t, axis=axis), lambda a: np_softmax(a, axis), [x])
    check_grad(lambda t: cm.log_softmax(t, axis=axis), lambda a: np_log_softmax(a, axis), [x])
    check_grad(lambda t: t.softmax(axis), lambda a: np_softmax(a, axis), [x], via="backward")
    check_grad(lambda t: t.log_softmax(axis), lambda a: np_log_softmax(a, axis), [x], via="backward")
    check_grad(lambda t: F.softmax(t, dim=axis), lambda a: np_softmax(a, axis), [x])
    check_grad(lambda t: F.log_softmax(t, dim=axis), lambda a: np_log_softmax(a, axis), [x])


def test_softmax_over_several_axes():
    x = np.random.default_rng(11).standard_normal((2, 3, 4))
    check_grad(lambda t: cm.softmax(t, axis=(0, 2)), lambda a: np_softmax(a, (0, 2)), [x])
    check_grad(lambda t: cm.log_softmax(t, axis=None), lambda a: np_log_softmax(a, None), [x])


# -- losses -------------------------------------------------------------------------------------

REDUCE = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}
LOSS_SHAPES = [(5,), (4, 3), (4, 1)]


@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=_id)
@pytest.mark.parametrize("reduction", list(REDUCE))
def test_mse_loss(reduction, shape):
    rng = np.random.default_rng(12)
    p, y = rng.standard_normal(shape), rng.standard_normal(shape)
    r = REDUCE[reduction]
    check_grad(lambda a, b: F.mse_loss(a, b, reduction=reduction), lambda a, b: r((a - b) ** 2), [p, y])
    check_grad(lambda a: F.mse_loss(a, y, reduction=reduction), lambda a: r((a - y) ** 2), [p], via="backward")


@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=_id)
@pytest.mark.parametrize("reduction", list(REDUCE))
def test_binary_cross_entropy(reduction, shape):
    rng = np.random.default_rng(13)
    p = rng.uniform(0.05, 0.95, shape)
    hard = (rng.random(shape) > 0.5).astype(float)
    soft = rng.uniform(0.0, 1.0, shape)
    r = REDUCE[reduction]

    def ref(a, b):
        return r(-(b * np.log(a) + (1 - b) * np.log(1 - a)))

    for y in (hard, soft):
        check_grad(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction), ref, [p, y])
        check_grad(lambda a: F.binary_cross_entropy(a, y, reduction=reduction), lambda a: ref(a, y), [p],
                   via="backward")


@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=_id)
@pytest.mark.parametrize("reduction", list(REDUCE))
def test_binary_cross_entropy_with_logits(reduction, shape):
    rng = np.random.default_rng(14)
    z = 3 * rng.standard_normal(shape)
    r = REDUCE[reduction]

    def ref(a, b):
        s = _np_sigmoid(a)
        return r(-(b * np.log(s) + (1 - b) * np.log(1 - s)))

    for y in ((rng.random(shape) > 0.5).astype(float), rng.uniform(0.0, 1.0, shape)):
        check_grad(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), ref, [z, y],
                   fwd_atol=1e-10)
        check_grad(lambda a: F.binary_cross_entropy_with_logits(a, y, reduction=reduction), lambda a: ref(a, y),
                   [z], via="backward", fwd_atol=1e-10)


LABELS = np.array([0, 2, 2, 1, 0])


@pytest.mark.parametrize("reduction", list(REDUCE))
def test_cross_entropy(reduction):
    z = 2 * np.random.default_rng(15).standard_normal((5, 3))
    r = REDUCE[reduction]

    def ref(a):
        return r(-np_log_softmax(a, 1)[np.arange(5), LABELS])

    check_grad(lambda a: F.cross_entropy(a, LABELS, reduction=reduction), ref, [z])
    check_grad(lambda a: F.cross_entropy(a, LABELS.astype(float), reduction=reduction), ref, [z], via="backward")
    check_grad(lambda a: F.cross_entropy(a, cm.tensor(LABELS), reduction=reduction), ref, [z])


@pytest.mark.parametrize("reduction", list(REDUCE))
def test_nll_loss(reduction):
    rng = np.random.default_rng(16)
    r = REDUCE[reduction]
    logp = np_log_softmax(rng.standard_normal((5, 3)), 1)

    def ref(a):
        return r(-a[np.arange(5), LABELS])

    check_grad(lambda a: F.nll_loss(a, LABELS, reduction=reduction), ref, [logp])
    check_grad(lambda a: F.nll_loss(a, LABELS, reduction=reduction), ref, [rng.standard_normal((5, 3))],
               via="backward")
    # nll_loss(log_softmax(z)) == cross_entropy(z), gradient included
    z = rng.standard_normal((5, 3))
    check_grad(lambda a: F.nll_loss(F.log_softmax(a, dim=1), LABELS, reduction=reduction),
               lambda a: r(-np_log_softmax(a, 1)[np.arange(5), LABELS]), [z])


def test_linear_functional():
    rng = np.random.default_rng(17)
    x, W, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    check_grad(lambda a, w, c: F.linear(a, w, c), lambda a, w, c: a @ w.T + c, [x, W, b])
    check_grad(lambda a, w: F.linear(a, w), lambda a, w: a @ w.T, [x, W])


# -- property tests with hypothesis --------------------------------------------------------------

@settings(max_examples=60, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(BINARY)), shapes=st.sampled_from(PAIRS), seed=st.integers(0, 2**32 - 1),
       scale=st.floats(0.1, 10.0))
def test_property_binary_broadcasting(name, shapes, seed, scale):
    cm_fn, np_fn, dom_a, dom_b = BINARY[name]
    rng = np.random.default_rng(seed)
    a, b = values(shapes[0], dom_a, rng), values(shapes[1], dom_b, rng)
    if name != "pow":          # pow's base and exponent stay in their domains
        a = a * scale
    check_grad(cm_fn, np_fn, [a, b], seed=seed % 1000)


SMOOTH_UNARY = ["neg", "exp", "tanh", "sigmoid", "softplus", "log", "sqrt", "abs", "relu", "leaky_relu"]


@st.composite
def unary_case(draw):
    name = draw(st.sampled_from(SMOOTH_UNARY))
    shape = draw(st.sampled_from(SHAPES))
    domain = UNARY[name][2]
    magnitude = hnp.arrays(np.float64, shape, elements=st.floats(0.1, 4.0))
    x = draw(magnitude)
    if domain not in ("pos",):
        x = x * draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 1.0])))
    return name, x


@settings(max_examples=60, deadline=None, derandomize=True)
@given(case=unary_case())
def test_property_unary(case):
    name, x = case
    cm_fn, np_fn, _ = UNARY[name]
    check_grad(cm_fn, np_fn, [x])


@settings(max_examples=30, deadline=None, derandomize=True)
@given(shape=st.sampled_from([(3,), (2, 3), (2, 3, 4)]), data=st.data())
def test_property_reduction_then_elementwise(shape, data):
    """A reduction whose result is broadcast back against its input: the unbroadcast path."""
    axis = data.draw(st.sampled_from(axis_options(len(shape))))
    op = data.draw(st.sampled_from(["sum", "mean", "max"]))
    x = distinct_values(shape, np.random.default_rng(data.draw(st.integers(0, 1000))))
    cm_red, np_red = REDUCTIONS[op]
    check_grad(lambda t: t * cm_red(t, axis, True) - cm_red(t.tanh(), axis, True),
               lambda a: a * np_red(a, axis=axis, keepdims=True) - np_red(np.tanh(a), axis=axis, keepdims=True),
               [x])
