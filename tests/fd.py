"""Central finite differences in float64 with plain numpy: the reference the gradient tests trust.

First order, nothing here calls the engine's backward: `numeric_grad` differentiates a plain-numpy
scalar function; `check_grad` compares the engine's gradient of sum(f(x) * R) (R a fixed random
projection) with the central differences of the same projection of an independent numpy
reference of f, and also checks that the engine's forward values equal the reference's.

Second order, finite differences OF THE GRADIENT from ordinary first-order backward (never the
engine's double backward): `first_order`, `directional_derivative` (of any function of the
arrays), `numeric_hvp` (H·v along a direction) and `numeric_hessian` (the whole matrix, a column
per unit vector). Every test that differences numerically does it through this module.
"""
from __future__ import annotations

import numpy as np

import calcml as cm

EPS = 1e-6
ATOL = 1e-5   # PyTorch gradcheck's tolerances
RTOL = 1e-3


def numeric_grad(f, arrays, eps: float = EPS, wrt=None) -> list:
    """d f(*arrays) / d arrays[k] by central differences, for each k in `wrt` (default: all).

    `f` takes float64 numpy arrays and returns a number; the arrays are perturbed in place
    one element at a time and restored.
    """
    arrays = [np.array(a, dtype=np.float64, copy=True) for a in arrays]
    wrt = range(len(arrays)) if wrt is None else wrt
    grads = []
    for k in wrt:
        g = np.zeros(arrays[k].shape)
        flat, gflat = arrays[k].reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            original = flat[i]
            flat[i] = original + eps
            plus = float(f(*arrays))
            flat[i] = original - eps
            minus = float(f(*arrays))
            flat[i] = original
            gflat[i] = (plus - minus) / (2.0 * eps)
        grads.append(g)
    return grads


def projection(shape, seed: int = 0) -> np.ndarray:
    """The fixed random R of sum(out * R): checks the whole Jacobian in one scalar."""
    return np.random.default_rng(seed + 1234).standard_normal(shape)


def assert_close(analytic, numeric, atol: float = ATOL, rtol: float = RTOL, what: str = "") -> None:
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    bad = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
    if np.any(bad):
        raise AssertionError(
            f"{what}: gradient mismatch at {np.argwhere(bad)[:5].tolist()}\n"
            f"analytic:\n{analytic}\nnumeric:\n{numeric}"
        )


def check_grad(cm_fn, np_fn, arrays, wrt=None, seed: int = 0, via: str = "grad",
               atol: float = ATOL, rtol: float = RTOL, fwd_atol: float = 1e-12) -> None:
    """Check the engine's gradient of `cm_fn` against central differences of `np_fn`.

    cm_fn(*tensors) -> Tensor, np_fn(*arrays) -> array: the same function, the latter in plain
    numpy. `wrt`: indices of the arguments that require grad (default: all); the others are
    passed to cm_fn as constant tensors. via='grad' uses cm.grad, via='backward' uses
    .backward() and the leaves' .grad.
    """
    arrays = [np.array(a, dtype=np.float64, copy=True) for a in arrays]
    wrt = list(range(len(arrays))) if wrt is None else list(wrt)
    tensors = [cm.tensor(a, requires_grad=(k in wrt)) for k, a in enumerate(arrays)]
    out = cm_fn(*tensors)
    reference = np.asarray(np_fn(*arrays), dtype=np.float64)
    assert out.shape == reference.shape, f"forward shape {out.shape} != numpy's {reference.shape}"
    np.testing.assert_allclose(out.data, reference, rtol=1e-10, atol=fwd_atol, err_msg="forward values")
    # the inputs must not have been modified by the forward pass
    for t, a in zip(tensors, arrays):
        np.testing.assert_array_equal(t.data, a)

    R = projection(reference.shape, seed)
    scalar = (out * R).sum()
    if via == "grad":
        analytic = cm.grad(scalar, [tensors[k] for k in wrt])
        for a in analytic:
            assert isinstance(a, cm.Tensor)
        analytic = [a.data for a in analytic]
        for k in wrt:
            assert tensors[k].grad is None, "cm.grad must not touch .grad"
    elif via == "backward":
        scalar.backward()
        analytic = [tensors[k].grad for k in wrt]
    else:
        raise ValueError(via)

    numeric = numeric_grad(lambda *a: np.sum(np.asarray(np_fn(*a)) * R), arrays, wrt=wrt)
    for k, a, n in zip(wrt, analytic, numeric):
        assert a is not None, f"input {k}: no gradient"
        assert np.shape(a) == arrays[k].shape, f"input {k}: gradient shape {np.shape(a)} != {arrays[k].shape}"
        assert np.all(np.isfinite(a)), f"input {k}: non-finite gradient"
        assert_close(a, n, atol, rtol, what=f"input {k} of shape {arrays[k].shape}")


# -- second order: finite differences OF THE GRADIENT -------------------------------------------

def first_order(fn, arrays) -> list:
    """∇ fn at `arrays` by ordinary backward (numpy arrays, float64); zeros for unused inputs."""
    tensors = [cm.tensor(a, requires_grad=True) for a in arrays]
    fn(*tensors).backward()
    return [np.zeros(a.shape) if t.grad is None else np.array(t.grad) for a, t in zip(arrays, tensors)]


def directional_derivative(g, arrays, vs, eps: float = EPS) -> list:
    """(g(x + εv) − g(x − εv)) / 2ε by central differences, for g mapping a list of float64 arrays
    to a list of arrays (x: `arrays`, v: `vs`, one direction per array)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    plus = g([a + eps * v for a, v in zip(arrays, vs)])
    minus = g([a - eps * v for a, v in zip(arrays, vs)])
    return [(p - m) / (2 * eps) for p, m in zip(plus, minus)]


def numeric_hvp(fn, arrays, vs, eps: float = EPS) -> list:
    """H·v of a scalar fn(*tensors): the directional derivative of its gradient from ordinary
    backward (first_order), (∇fn(x + εv) − ∇fn(x − εv)) / 2ε, per input."""
    return directional_derivative(lambda a: first_order(fn, a), arrays, vs, eps)


def numeric_hessian(fn, arrays, eps: float = EPS) -> np.ndarray:
    """The Hessian of a scalar fn(*tensors) over all its inputs flattened in order, (n, n), column j
    by central differences of the gradient along the j-th unit vector (numeric_hvp)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    sizes = np.cumsum([0] + [a.size for a in arrays])
    n = int(sizes[-1])
    H = np.zeros((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        vs = [e[sizes[k]:sizes[k + 1]].reshape(a.shape) for k, a in enumerate(arrays)]
        H[:, j] = np.concatenate([c.ravel() for c in numeric_hvp(fn, arrays, vs, eps)])
    return H
