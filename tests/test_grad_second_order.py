"""Second derivatives by double backward (cm.grad with create_graph=True).

The reference is finite differences OF THE GRADIENT: first-order gradients from ordinary
backward at x ± eps·e_i (or x ± eps·v for Hessian-vector products), differenced centrally in
float64. The first-order gradients are themselves checked here against finite differences of
the forward values, and in test_grad_primitives.py against independent numpy references.
"""
from __future__ import annotations

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F

from fd import (assert_close, directional_derivative, first_order, numeric_grad, numeric_hessian, numeric_hvp,
                projection)


def _forward_value(fn, arrays) -> float:
    with cm.no_grad():
        return float(fn(*[cm.tensor(a) for a in arrays]).data)


def engine_hvp(fn, arrays, vs) -> tuple:
    """(∇L, H·v) at `arrays` by double backward; None gradients read as zeros."""
    xs = [cm.tensor(a, requires_grad=True) for a in arrays]
    loss = fn(*xs)
    grads = cm.grad(loss, xs, create_graph=True, allow_unused=True)
    total = None
    for g, v in zip(grads, vs):
        if g is None:
            continue
        assert isinstance(g, cm.Tensor)
        term = (g * v).sum()
        total = term if total is None else total + term
    first = [np.zeros(a.shape) if g is None else np.array(g.data) for a, g in zip(arrays, grads)]
    if total is None or not total.requires_grad:      # the gradient does not depend on x: H = 0
        return first, [np.zeros(a.shape) for a in arrays]
    hv = cm.grad(total, xs, allow_unused=True)
    for x in xs:
        assert x.grad is None, "cm.grad must leave .grad alone"
    return first, [np.zeros(a.shape) if h is None else h.data for a, h in zip(arrays, hv)]


def check_second_order(fn, arrays, seed: int = 0, atol: float = 1e-5, rtol: float = 1e-3) -> None:
    """Check ∇L, H·v (every entry) and the directional HVP of a scalar fn(*tensors)."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    vs = [projection(a.shape, seed + k) for k, a in enumerate(arrays)]
    first, hv = engine_hvp(fn, arrays, vs)

    # 1. the create_graph first-order gradient: same as plain backward, and as FD of the forward
    plain = first_order(fn, arrays)
    numeric_first = numeric_grad(lambda *a: _forward_value(fn, a), arrays)
    for k in range(len(arrays)):
        np.testing.assert_allclose(first[k], plain[k], rtol=1e-12, atol=1e-12,
                                   err_msg=f"create_graph gradient differs from backward's (input {k})")
        assert_close(first[k], numeric_first[k], atol, rtol, what=f"first-order input {k}")

    # 2. d/dx_i Σ_j (∇L)_j v_j, by differencing backward's gradients at x ± eps e_i
    def projected_gradient(*a):
        return sum(float(np.sum(g * v)) for g, v in zip(first_order(fn, a), vs))

    numeric_hv = numeric_grad(projected_gradient, arrays)
    for k in range(len(arrays)):
        assert np.all(np.isfinite(hv[k]))
        assert_close(hv[k], numeric_hv[k], atol, rtol, what=f"H·v, input {k} of shape {arrays[k].shape}")

    # 3. the exact Hessian-vector product against (∇L(x+εv) − ∇L(x−εv)) / 2ε
    numeric_along_v = numeric_hvp(fn, arrays, vs)
    _, hv_along_v = engine_hvp(fn, arrays, vs)
    for k in range(len(arrays)):
        assert_close(hv_along_v[k], numeric_along_v[k], atol, rtol, what=f"directional HVP {k}")


def projected(f, shape_of_out, seed=99):
    R = projection(shape_of_out, seed)
    return lambda *xs: (f(*xs) * R).sum()


RNG = np.random.default_rng(2024)
X = RNG.standard_normal((2, 3))
POS = RNG.uniform(0.5, 2.0, (2, 3))
POS2 = RNG.uniform(0.5, 2.0, (2, 3))
NONZERO = np.sign(RNG.standard_normal((2, 3))) * RNG.uniform(0.5, 2.0, (2, 3))
LABELS = np.array([2, 0, 1, 2])

CASES = {
    "exp": (projected(lambda x: x.exp(), (2, 3)), [X]),
    "log": (projected(lambda x: x.log(), (2, 3)), [POS]),
    "log1p": (projected(lambda x: x.log1p(), (2, 3)), [POS]),
    "sqrt": (projected(lambda x: x.sqrt(), (2, 3)), [POS]),
    "tanh": (projected(lambda x: x.tanh(), (2, 3)), [X]),
    "sigmoid": (projected(lambda x: x.sigmoid(), (2, 3)), [X]),
    "softplus": (projected(lambda x: cm.softplus(x), (2, 3)), [NONZERO]),
    "x ** 3": (projected(lambda x: x ** 3, (2, 3)), [X]),
    "x ** 2.5": (projected(lambda x: x ** 2.5, (2, 3)), [POS]),
    "2 ** x": (projected(lambda x: 2.0 ** x, (2, 3)), [X]),
    "x ** y": (projected(lambda x, y: x ** y, (2, 3)), [POS, X]),
    "x ** y broadcast": (projected(lambda x, y: x ** y, (2, 3)), [POS, X[0]]),
    "x * y": (projected(lambda x, y: x * y, (2, 3)), [X, NONZERO]),
    "x * x * y broadcast": (projected(lambda x, y: x * x * y, (2, 3)), [X, NONZERO[:, :1]]),
    "x / y": (projected(lambda x, y: x / y, (2, 3)), [X, NONZERO]),
    "1 / x": (projected(lambda x: 1.0 / x, (2, 3)), [NONZERO]),
    "x / y scalar y": (projected(lambda x, y: x / y, (2, 3)), [X, np.array(1.7)]),
    "x - y squared": (projected(lambda x, y: (x - y) * (x - y), (2, 3)), [X, NONZERO[0]]),
    "neg exp": (projected(lambda x: (-x).exp(), (2, 3)), [X]),
    "log_softmax": (projected(lambda x: cm.log_softmax(x, axis=1), (2, 3)), [X]),
    "log_softmax axis 0": (projected(lambda x: cm.log_softmax(x, axis=0), (2, 3)), [X]),
    "softmax": (projected(lambda x: cm.softmax(x, axis=-1), (2, 3)), [X]),
    "logsumexp": (projected(lambda x: cm.logsumexp(x, axis=1), (2,)), [X]),
    "cross_entropy": (lambda z: F.cross_entropy(z, LABELS), [RNG.standard_normal((4, 3))]),
    "cross_entropy sum": (lambda z: F.cross_entropy(z, LABELS, reduction="sum"), [3 * RNG.standard_normal((4, 3))]),
    "bce_with_logits": (lambda z, y: F.binary_cross_entropy_with_logits(z, y),
                        [RNG.standard_normal((4, 1)) + 0.3, RNG.uniform(0, 1, (4, 1))]),
    "bce": (lambda p, y: F.binary_cross_entropy(p, y), [RNG.uniform(0.1, 0.9, (5,)), RNG.uniform(0, 1, (5,))]),
    "mse": (lambda p, y: F.mse_loss(p.tanh(), y), [X, NONZERO]),
    "matmul": (projected(lambda a, b: (a @ b) * (a @ b), (2, 4)), [X, RNG.standard_normal((3, 4))]),
    "matmul 1-D": (lambda a, b: ((a @ b).tanh() * (a @ b)).sum(), [X[0], RNG.standard_normal((3, 4))]),
    "matmul batched": (projected(lambda a, b: (a @ b).exp(), (2, 2, 4)),
                       [0.5 * RNG.standard_normal((2, 2, 3)), 0.5 * RNG.standard_normal((3, 4))]),
    "matmul 1-D @ batched": (projected(lambda a, b: (a @ b).tanh(), (2, 4)),
                             [RNG.standard_normal(3), RNG.standard_normal((2, 3, 4))]),
    "matmul batched @ 1-D": (projected(lambda a, b: (a @ b).sigmoid(), (2, 3)),
                             [RNG.standard_normal((2, 3, 4)), RNG.standard_normal(4)]),
    "softplus through 0": (projected(lambda x: cm.softplus(x * x - 1.0), (3,)), [np.array([1.0, -1.0, 0.5])]),
    "tanh(x@W)@v": (lambda x, W, v: (x @ W).tanh() @ v, [RNG.standard_normal(3), RNG.standard_normal((3, 4)),
                                                           RNG.standard_normal(4)]),
    "tanh(X@W)@v batch": (lambda x, W, v: ((x @ W).tanh() @ v).sum(),
                          [RNG.standard_normal((5, 3)), RNG.standard_normal((3, 4)), RNG.standard_normal(4)]),
    "reductions": (lambda x: (x.sum(axis=0) ** 3).sum() + (x.mean(axis=1, keepdims=True) * x).sum()
                   + (x.max(axis=1) ** 2).sum(), [X]),
    "shape ops": (lambda x: ((x.T.reshape(6) ** 2)[np.array([0, 3, 3, 5])] * x.broadcast_to((4, 2, 3))[1, 0]
                             .sum()).sum() + (x.transpose(1, 0)[1:] ** 3).sum(), [X]),
    "getitem repeated": (lambda x: (x[np.array([1, 1, 0])] ** 3).sum(), [X]),
    "where": (lambda x: cm.where(X > 0, x ** 3, x.exp()).sum(), [X]),
    "abs and relu away from 0": (lambda x: ((x.abs() ** 3) + x.relu() ** 2 + cm.leaky_relu(x, 0.2) ** 2).sum(),
                                 [NONZERO]),
    "clip": (lambda x: (x.clip(-1.0, 1.0) ** 3 + x ** 2).sum(), [NONZERO * 0.7]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_second_order(name):
    fn, arrays = CASES[name]
    check_second_order(fn, arrays)


def _mlp_parameters(seed):
    rng = np.random.default_rng(seed)
    return [0.7 * rng.standard_normal((3, 4)), 0.1 * rng.standard_normal(4),
            0.7 * rng.standard_normal((4, 3)), 0.1 * rng.standard_normal(3)]


MLP_X = np.random.default_rng(5).standard_normal((6, 3))
MLP_Y = np.array([0, 1, 2, 2, 1, 0])


def mlp_cross_entropy(W1, b1, W2, b2):
    h = (MLP_X @ W1 + b1).tanh()
    return F.cross_entropy(h @ W2 + b2, MLP_Y)


def mlp_mse(W1, b1, W2, b2):
    h = (MLP_X @ W1 + b1).sigmoid()
    return F.mse_loss(cm.softplus(h @ W2 + b2), np.eye(3)[MLP_Y])


@pytest.mark.parametrize("loss", [mlp_cross_entropy, mlp_mse])
def test_mlp_loss_wrt_weights(loss):
    check_second_order(loss, _mlp_parameters(1))


def test_mlp_with_nn_modules_hessian_vector_product():
    """The same check through cm.nn.Linear parameters (their values set from arrays)."""
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(3, 4), cm.nn.Tanh(), cm.nn.Linear(4, 3))
    params = list(model.parameters())
    arrays = [p.data.copy() for p in params]
    vs = [projection(a.shape, k) for k, a in enumerate(arrays)]
    for p, a in zip(params, arrays):
        p.data = a.copy()
    grads = cm.grad(F.cross_entropy(model(MLP_X), MLP_Y), params, create_graph=True)
    hv = cm.grad(sum(((g * v).sum() for g, v in zip(grads, vs)), cm.tensor(0.0)), params)
    for p in params:
        assert p.grad is None

    def grads_at(arrays):
        for p, a in zip(params, arrays):
            p.data = np.array(a)
            p.grad = None
        F.cross_entropy(model(MLP_X), MLP_Y).backward()
        out = [p.grad.numpy().copy() for p in params]
        for p in params:
            p.grad = None
        return out

    for h, numeric in zip(hv, directional_derivative(grads_at, arrays, vs)):
        assert_close(h.data, numeric, what="nn.Linear MLP HVP")


def test_hessian_of_quadratic_form_is_symmetric_part():
    rng = np.random.default_rng(0)
    n = 5
    A = rng.standard_normal((n, n))
    x = cm.tensor(rng.standard_normal(n), requires_grad=True)
    for loss_fn in (lambda t: 0.5 * (t @ (A @ t)), lambda t: 0.5 * (t @ A @ t),
                    lambda t: 0.5 * ((t.reshape(1, n) @ cm.tensor(A)) @ t.reshape(n, 1)).sum()):
        (g,) = cm.grad(loss_fn(x), [x], create_graph=True)
        np.testing.assert_allclose(g.data, 0.5 * (A + A.T) @ x.data, rtol=0, atol=1e-12)
        H = np.stack([cm.grad((g * np.eye(n)[j]).sum(), [x])[0].data for j in range(n)], axis=1)
        np.testing.assert_allclose(H, 0.5 * (A + A.T), rtol=0, atol=1e-10)
        # H·v through a single double backward, v random
        v = rng.standard_normal(n)
        (hv,) = cm.grad((g * v).sum(), [x])
        np.testing.assert_allclose(hv.data, 0.5 * (A + A.T) @ v, rtol=0, atol=1e-10)
    assert x.grad is None


def test_full_hessian_of_a_small_network_against_fd():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((3, 2))
    x0 = rng.standard_normal(3)

    def loss(x):
        return ((x @ W).tanh() ** 2).sum() + (x.exp() * x).sum()

    xt = cm.tensor(x0, requires_grad=True)
    (g,) = cm.grad(loss(xt), [xt], create_graph=True)
    H = np.stack([cm.grad(g[j], [xt])[0].data for j in range(3)])      # row j: ∇(∂L/∂x_j)
    numeric = numeric_hessian(loss, [x0])
    assert_close(H, numeric, what="Hessian")
    np.testing.assert_allclose(H, H.T, atol=1e-12)


def test_third_derivative_by_triple_backward():
    x = cm.tensor([0.3, -1.2, 2.0], requires_grad=True)
    (g1,) = cm.grad((x ** 4).sum(), [x], create_graph=True)
    (g2,) = cm.grad(g1.sum(), [x], create_graph=True)
    (g3,) = cm.grad(g2.sum(), [x])
    np.testing.assert_allclose(g1.data, 4 * x.data ** 3, rtol=1e-12)
    np.testing.assert_allclose(g2.data, 12 * x.data ** 2, rtol=1e-12)
    np.testing.assert_allclose(g3.data, 24 * x.data, rtol=1e-12)
    # tanh''' = -2 (1 - t²)(1 - 3 t²), checked against differences of the second derivative
    (g1,) = cm.grad(x.tanh().sum(), [x], create_graph=True)
    (g2,) = cm.grad(g1.sum(), [x], create_graph=True)
    (g3,) = cm.grad(g2.sum(), [x])
    t = np.tanh(x.data)
    np.testing.assert_allclose(g2.data, -2 * t * (1 - t * t), rtol=1e-12)
    np.testing.assert_allclose(g3.data, -2 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-12)


def test_closed_form_second_derivatives():
    z = np.linspace(-4, 4, 17)
    s = 1 / (1 + np.exp(-z))
    t = np.tanh(z)
    cases = [
        (lambda x: x.exp(), np.exp(z), z),
        (lambda x: x.sigmoid(), s * (1 - s) * (1 - 2 * s), z),
        (lambda x: x.tanh(), -2 * t * (1 - t * t), z),
        (lambda x: cm.softplus(x), s * (1 - s), z),
        (lambda x: x.log(), -1 / (z + 5) ** 2, z + 5),
        (lambda x: x.sqrt(), -0.25 * (z + 5) ** -1.5, z + 5),
    ]
    for f, expected, at in cases:
        x = cm.tensor(at, requires_grad=True)
        (g,) = cm.grad(f(x).sum(), [x], create_graph=True)
        (h,) = cm.grad(g.sum(), [x])
        np.testing.assert_allclose(h.data, expected, rtol=1e-10, atol=1e-14)


def test_gradient_penalty_backward_accumulates_into_grad():
    """L2 = |∇L|² differentiated by .backward() on the create_graph result (WGAN-GP style)."""
    W = np.random.default_rng(8).standard_normal((3, 3))

    def loss(x):
        return ((x @ W).tanh() * x).sum()

    x0 = np.random.default_rng(9).standard_normal(3)
    x = cm.tensor(x0, requires_grad=True)
    (g,) = cm.grad(loss(x), [x], create_graph=True)
    assert x.grad is None
    penalty = (g * g).sum()
    penalty.backward()
    numeric = numeric_grad(lambda a: float(np.sum(first_order(loss, [a])[0] ** 2)), [x0])[0]
    assert_close(x.grad, numeric, what="gradient penalty")


# -- cm.grad's contract --------------------------------------------------------------------------

def test_grad_returns_tensors_and_leaves_dot_grad_alone():
    x = cm.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = cm.tensor([0.5, -1.0, 2.0], requires_grad=True)
    w.grad = np.array([7.0, 7.0, 7.0])
    y = (x * w).sum()
    gx, gw = cm.grad(y, [x, w])
    assert isinstance(gx, cm.Tensor) and isinstance(gw, cm.Tensor)
    np.testing.assert_array_equal(gx.data, w.data)
    np.testing.assert_array_equal(gw.data, x.data)
    assert x.grad is None
    np.testing.assert_array_equal(w.grad, [7.0, 7.0, 7.0])
    assert not gx.requires_grad and gx.is_leaf
    # a single tensor input still gives a list
    result = cm.grad(y, x)
    assert isinstance(result, list) and len(result) == 1
    np.testing.assert_array_equal(result[0].data, w.data)
    # the graph is still usable afterwards
    y.backward()
    np.testing.assert_array_equal(x.grad, w.data)


def test_grad_results_are_fresh_arrays():
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    y = x.sum()
    (g1,) = cm.grad(y, [x])
    g1.data[...] = 100.0
    (g2,) = cm.grad(y, [x])
    np.testing.assert_array_equal(g2.data, [1.0, 1.0])
    assert not np.shares_memory(g2.data, x.data)


def test_grad_create_graph_results_require_grad():
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    (g,) = cm.grad((x ** 3).sum(), [x], create_graph=True)
    assert isinstance(g, cm.Tensor) and g.requires_grad and not g.is_leaf
    np.testing.assert_allclose(g.data, 3 * x.data ** 2)
    assert x.grad is None


def test_grad_allow_unused_and_error_when_unused():
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    unused = cm.tensor([3.0], requires_grad=True, name="bias")
    y = (x * x).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        cm.grad(y, [x, unused])
    with pytest.raises(RuntimeError, match="bias"):
        cm.grad(y, [x, unused])
    gx, gu = cm.grad(y, [x, unused], allow_unused=True)
    assert gu is None
    np.testing.assert_array_equal(gx.data, [2.0, 4.0])
    # allow_unused with create_graph
    gx, gu = cm.grad(y, [x, unused], allow_unused=True, create_graph=True)
    assert gu is None and gx.requires_grad
    # a tensor that does not require grad counts as unused
    const = cm.tensor([1.0, 1.0])
    z = (x * const).sum()
    with pytest.raises(RuntimeError, match="not used"):
        cm.grad(z, [const])
    assert cm.grad(z, [const], allow_unused=True) == [None]


def test_grad_errors():
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad_outputs"):
        cm.grad(x * 2, [x])
    with pytest.raises(RuntimeError, match="does not depend"):
        cm.grad(cm.tensor([1.0]).sum(), [x])
    with cm.no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError):
        cm.grad(y, [x])


def test_grad_outputs_intermediates_and_several_outputs():
    x = cm.tensor([1.0, -2.0, 0.5], requires_grad=True)
    y = x * x
    z = y.exp().sum()
    # w.r.t. an intermediate (non-leaf) tensor
    gy, gx = cm.grad(z, [y, x])
    np.testing.assert_allclose(gy.data, np.exp(y.data))
    np.testing.assert_allclose(gx.data, np.exp(y.data) * 2 * x.data)
    # grad_outputs for a non-scalar output: a vector-Jacobian product
    v = np.array([1.0, 2.0, 3.0])
    (g,) = cm.grad(y, [x], grad_outputs=v)
    np.testing.assert_allclose(g.data, 2 * x.data * v)
    (g,) = cm.grad([y], [x], grad_outputs=[cm.tensor(v)])
    np.testing.assert_allclose(g.data, 2 * x.data * v)
    # several outputs: gradients add up
    (g,) = cm.grad([y, x.sum()], [x], grad_outputs=[v, None])
    np.testing.assert_allclose(g.data, 2 * x.data * v + 1)
    (g,) = cm.grad([y.sum(), (3 * x).sum()], [x])
    np.testing.assert_allclose(g.data, 2 * x.data + 3)
    assert x.grad is None


def test_create_graph_and_plain_gradients_agree_everywhere():
    for name, (fn, arrays) in CASES.items():
        xs = [cm.tensor(a, requires_grad=True) for a in arrays]
        with_graph = cm.grad(fn(*xs), xs, create_graph=True, allow_unused=True)
        plain = cm.grad(fn(*xs), xs, allow_unused=True)
        for a, b in zip(with_graph, plain):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-14, err_msg=name)
