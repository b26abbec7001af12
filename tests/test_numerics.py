"""Analytic identities, numerical stability, graph mechanics, dtypes and error messages."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F

from fd import assert_close, numeric_grad

# z = 0 exactly, both signs, small and very large magnitudes
Z = np.unique(np.concatenate([np.linspace(-12.0, 12.0, 481), [0.0, -0.0, 1e-8, -1e-8, 40.0, -40.0, 700.0, -700.0]]))


@pytest.fixture
def strict_numpy():
    """Overflow, division by zero and invalid operations are errors (underflow to 0 is fine)."""
    with np.errstate(over="raise", divide="raise", invalid="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def derivative(f, z):
    x = cm.tensor(z, requires_grad=True)
    y = f(x)
    y.sum().backward()
    return y.data, x.grad


def np_sigmoid(z):
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


# -- activation derivatives --------------------------------------------------------------------

def test_sigmoid_derivative_identity_and_bound(strict_numpy):
    s, ds = derivative(lambda x: x.sigmoid(), Z)
    np.testing.assert_allclose(s, np_sigmoid(Z), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(ds, s * (1 - s), rtol=1e-12, atol=0)
    assert np.all(ds <= 0.25) and np.all(ds >= 0)
    assert ds[Z == 0.0].item() == 0.25 == ds.max()
    assert np.all(ds[np.abs(Z) > 1e-4] < 0.25)     # σ'(±1e-8) rounds to 1/4 as well
    # full relative precision on the negative side: σ(-40) ≈ 4.2e-18, not 0
    s, ds = derivative(lambda x: x.sigmoid(), np.array([-40.0, -300.0]))
    np.testing.assert_allclose(s, np.exp([-40.0, -300.0]) / (1 + np.exp([-40.0, -300.0])), rtol=1e-14)
    np.testing.assert_allclose(ds, s * (1 - s), rtol=1e-14)
    assert F.binary_cross_entropy(cm.tensor([-40.0]).sigmoid(), [1.0]).item() == pytest.approx(40.0, rel=1e-12)
    # saturates without overflow: σ(±1000) are 1 and 0, derivative 0
    s, ds = derivative(lambda x: x.sigmoid(), np.array([-1000.0, 1000.0]))
    np.testing.assert_array_equal(s, [0.0, 1.0])
    np.testing.assert_array_equal(ds, [0.0, 0.0])


def test_tanh_derivative_identity(strict_numpy):
    t, dt = derivative(lambda x: x.tanh(), Z)
    np.testing.assert_allclose(dt, 1 - t * t, rtol=1e-12, atol=0)
    assert dt[Z == 0.0].item() == 1.0 and np.all(dt <= 1.0) and np.all(dt >= 0)
    # 1 - tanh² has absolute (not relative) precision once tanh rounds to ±1, as in PyTorch
    np.testing.assert_allclose(dt, 1 / np.cosh(np.clip(Z, -300, 300)) ** 2, rtol=1e-9, atol=1e-15)


def test_relu_derivative_is_zero_or_one(strict_numpy):
    z = np.concatenate([Z, np.zeros(3)])
    r, dr = derivative(lambda x: x.relu(), z)
    assert set(np.unique(dr)) <= {0.0, 1.0}
    np.testing.assert_array_equal(dr, (z > 0).astype(float))   # 0 at z = 0, as PyTorch
    np.testing.assert_array_equal(r, np.maximum(z, 0))
    _, dl = derivative(lambda x: cm.leaky_relu(x, 0.1), z)
    np.testing.assert_array_equal(dl, np.where(z > 0, 1.0, 0.1))


def test_softplus_derivative_is_sigmoid(strict_numpy):
    sp, dsp = derivative(lambda x: cm.softplus(x), Z)
    np.testing.assert_allclose(sp, np.logaddexp(0.0, Z), rtol=1e-14, atol=0)
    # absolute precision: for very negative z the gradient is 0.5 - (0.5 - σ(z)), which rounds
    np.testing.assert_allclose(dsp, np_sigmoid(Z), rtol=1e-12, atol=1e-16)
    assert dsp[Z == 0.0].item() == 0.5                 # exactly, not 0.5 ± rounding
    assert sp[Z == 0.0].item() == pytest.approx(np.log(2.0), rel=1e-15)
    # large magnitudes: finite values, derivatives 1 and 0
    sp, dsp = derivative(lambda x: cm.softplus(x), np.array([-1000.0, 1000.0, 0.0]))
    np.testing.assert_array_equal(sp[:2], [0.0, 1000.0])
    np.testing.assert_array_equal(dsp, [0.0, 1.0, 0.5])
    # its second derivative is σ(1 - σ), 1/4 at exactly 0 included
    x = cm.tensor(Z, requires_grad=True)
    (g,) = cm.grad(cm.softplus(x).sum(), [x], create_graph=True)
    (h,) = cm.grad(g.sum(), [x])
    s = np_sigmoid(Z)
    np.testing.assert_allclose(h.data, s * (1 - s), rtol=1e-9, atol=1e-16)
    assert h.data[Z == 0.0].item() == 0.25


# -- stable losses at extreme logits --------------------------------------------------------------

def test_cross_entropy_extreme_logits(strict_numpy):
    for label, expected_loss, expected_grad in [(0, 0.0, [0.0, 0.0]), (1, 2000.0, [1.0, -1.0])]:
        z = cm.tensor([[1000.0, -1000.0]], requires_grad=True)
        loss = F.cross_entropy(z, np.array([label]))
        loss.backward()
        assert np.isfinite(loss.item()) and np.all(np.isfinite(z.grad))
        assert loss.item() == pytest.approx(expected_loss, abs=1e-12, rel=1e-15)
        np.testing.assert_allclose(z.grad, [expected_grad], atol=1e-15)
    # a batch mixing both, ties at the top, and the sum reduction
    z = cm.tensor([[1000.0, -1000.0], [1000.0, -1000.0], [-1000.0, 1000.0], [500.0, 500.0]], requires_grad=True)
    labels = np.array([0, 1, 1, 0])
    losses = F.cross_entropy(z, labels, reduction="none")
    np.testing.assert_allclose(losses.data, [0.0, 2000.0, 0.0, np.log(2.0)], atol=1e-12)
    F.cross_entropy(z, labels, reduction="mean").backward()
    expected = np.array([[0.0, 0.0], [1.0, -1.0], [0.0, 0.0], [-0.5, 0.5]]) / 4
    np.testing.assert_allclose(z.grad, expected, atol=1e-15)
    # nll of log_softmax is the same
    assert F.nll_loss(cm.log_softmax(cm.tensor([[1000.0, -1000.0]]), axis=1), [1]).item() == pytest.approx(2000.0)


def test_bce_with_logits_extreme_logits(strict_numpy):
    z = cm.tensor([1000.0, -1000.0, 1000.0, -1000.0, 0.0], requires_grad=True)
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    losses = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    np.testing.assert_allclose(losses.data, [0.0, 0.0, 1000.0, 1000.0, np.log(2.0)], atol=1e-12, rtol=1e-15)
    F.binary_cross_entropy_with_logits(z, y, reduction="sum").backward()
    np.testing.assert_allclose(z.grad, [0.0, 0.0, 1.0, -1.0, -0.5], atol=1e-15)   # σ(z) - y


def test_bce_on_probabilities_0_and_1_is_finite(strict_numpy):
    p = cm.tensor([0.0, 1.0, 0.0, 1.0, 0.5], requires_grad=True)
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    losses = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_allclose(losses.data, [100.0, 100.0, 0.0, 0.0, np.log(2.0)], rtol=1e-12, atol=1e-12)
    losses.sum().backward()
    assert np.all(np.isfinite(p.grad))
    assert p.grad[4] == pytest.approx(-2.0)


def test_softmax_of_large_logits(strict_numpy):
    for logits in ([1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0], [1e300, 1e300, -1e300], [-1e4, -1e4 - 1, -1e4 - 2]):
        x = cm.tensor(logits, requires_grad=True)
        s = cm.softmax(x)
        assert np.all(np.isfinite(s.data))
        assert s.data.sum() == pytest.approx(1.0, abs=1e-15)
        (s * np.array([1.0, 2.0, 3.0])).sum().backward()
        assert np.all(np.isfinite(x.grad))
    s = cm.softmax(cm.tensor([1000.0, 1001.0, 1002.0])).data
    shifted = np.exp([-2.0, -1.0, 0.0])
    np.testing.assert_allclose(s, shifted / shifted.sum(), rtol=1e-14)
    np.testing.assert_allclose(cm.log_softmax(cm.tensor([1000.0, -1000.0])).data, [0.0, -2000.0], atol=1e-12)
    assert cm.logsumexp(cm.tensor([1000.0, 1000.0])).item() == pytest.approx(1000.0 + np.log(2.0), rel=1e-15)
    # precision does not degrade with the size of the logits, in float32 either
    for dtype, tol in ((np.float64, 1e-15), (np.float32, 5e-7)):
        e = np.exp(-np.arange(4.0))
        for base in (0.0, 1000.0, 1e4):
            s = cm.softmax(cm.tensor(base - np.arange(4.0), dtype=dtype)).data
            assert s.dtype == dtype
            np.testing.assert_allclose(s, e / e.sum(), rtol=tol, atol=0)
    # a batch where each row needs a different shift, along each axis
    x = np.array([[1000.0, -5.0, 3.0], [-1000.0, -1001.0, -999.0]])
    for axis in (0, 1, -1):
        s = cm.softmax(cm.tensor(x), axis=axis).data
        np.testing.assert_allclose(s.sum(axis=axis), 1.0, rtol=1e-15)


# -- deep graphs ---------------------------------------------------------------------------------

def test_chain_of_5000_ops_backpropagates_without_recursion_error():
    x = cm.tensor(0.5, requires_grad=True)
    y = x
    for _ in range(2500):
        y = y * 1.0001 + 0.0
    y.backward()
    assert x.grad == pytest.approx(1.0001 ** 2500, rel=1e-12)
    (g,) = cm.grad(y, [x])
    assert g.item() == pytest.approx(1.0001 ** 2500, rel=1e-12)


def test_chain_of_5000_tanh_ops():
    """y <- y + tanh(0.01 y), 1700 times (5100 ops): the derivative stays of order 1."""
    x0 = np.array([0.3, -1.2])
    x = cm.tensor(x0, requires_grad=True)
    y = x
    for _ in range(1700):
        y = y + (y * 0.01).tanh()
    y.sum().backward()
    # reference: the chain rule in plain numpy, and finite differences of the forward
    v, d = x0.copy(), np.ones(2)
    for _ in range(1700):
        t = np.tanh(0.01 * v)
        d = d * (1 + 0.01 * (1 - t * t))
        v = v + t

    def forward(a):
        for _ in range(1700):
            a = a + np.tanh(0.01 * a)
        return a.sum()

    np.testing.assert_allclose(y.data, v, rtol=1e-14)
    np.testing.assert_allclose(x.grad, d, rtol=1e-10)
    assert np.all(d > 2.0)          # not a trivially vanishing gradient
    assert_close(x.grad, numeric_grad(forward, [x0])[0], what="5000-op chain")


def test_deep_chain_double_backward():
    x = cm.tensor([0.4], requires_grad=True)
    y = x
    for _ in range(1000):
        y = y * 0.999 + x * 0.001            # x used 1001 times
    (g,) = cm.grad((y * y).sum(), [x], create_graph=True)
    (h,) = cm.grad(g.sum(), [x])
    # y == x exactly in value (0.999 + 0.001 = 1 per step), so L = x² up to rounding
    np.testing.assert_allclose(g.data, 2 * x.data, rtol=1e-10)
    np.testing.assert_allclose(h.data, [2.0], rtol=1e-10)


# -- graph mechanics --------------------------------------------------------------------------

def test_diamond_graph_accumulates():
    x0 = np.array([0.5, -1.0, 2.0])
    x = cm.tensor(x0, requires_grad=True)
    y = (x * x + x.exp()).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * x0 + np.exp(x0), rtol=1e-14)
    # a deeper diamond: an intermediate used by three ops
    x.grad = None

    def f(t):
        a = t.tanh()
        return (a * a * a.exp() + a / (1.0 + a * a)).sum()

    f(x).backward()
    numeric = numeric_grad(lambda v: np.sum(np.tanh(v) ** 2 * np.exp(np.tanh(v)) + np.tanh(v) / (1 + np.tanh(v) ** 2)),
                           [x0])[0]
    assert_close(x.grad, numeric, what="diamond")


def test_value_used_many_times():
    x = cm.tensor([1.5, -2.0], requires_grad=True)
    total = x * 0.0
    for k in range(1, 301):
        total = total + x * float(k)
    total.sum().backward()
    np.testing.assert_array_equal(x.grad, [300 * 301 / 2] * 2)
    # the same tensor as several inputs of one op, and in several reductions
    x.grad = None
    (x * x * x + x.sum() * x.mean() + x.max() * x).sum().backward()
    x0 = x.data
    expected = 3 * x0 ** 2 + (x0.mean() + x0.sum() / 2) * 2 + np.array([1.0, 0.0]) * x0.sum() + x0.max()
    np.testing.assert_allclose(x.grad, expected, rtol=1e-14)


def test_backward_twice_accumulates():
    x = cm.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * 2 * x.data)
    (x.exp().sum()).backward()
    np.testing.assert_allclose(x.grad, 4 * x.data + np.exp(x.data))
    x.zero_grad()
    assert x.grad is None
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * x.data)


def test_backward_with_explicit_gradient_and_errors():
    x = cm.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * x
    y.backward(np.array([1.0, 10.0]))           # broadcast upstream gradient
    np.testing.assert_array_equal(x.grad, 2 * x.data * np.array([1.0, 10.0]))
    with pytest.raises(RuntimeError, match="non-scalar"):
        y.backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        cm.tensor([1.0]).sum().backward()


def test_leaf_grads_do_not_share_memory():
    """Two leaves whose gradients come from the same upstream array through views."""
    a = cm.tensor(np.ones((2, 3)), requires_grad=True)
    b = cm.tensor(np.ones((2, 3)), requires_grad=True)
    ((a.T + b.T) * np.arange(6.0).reshape(3, 2)).sum().backward()
    expected = np.arange(6.0).reshape(3, 2).T
    np.testing.assert_array_equal(a.grad, expected)
    np.testing.assert_array_equal(b.grad, expected)
    assert not np.shares_memory(a.grad, b.grad), "a.grad and b.grad are views of one array"


def test_leaf_grad_does_not_alias_when_reshaped():
    a = cm.tensor(np.ones((2, 3)), requires_grad=True)
    b = cm.tensor(np.ones((2, 3)), requires_grad=True)
    ((a.reshape(6) + b.reshape(6)) * np.arange(6.0)).sum().backward()
    a.grad *= 0.0                                   # an optimiser clipping or zeroing in place
    np.testing.assert_array_equal(b.grad, np.arange(6.0).reshape(2, 3))


def test_no_grad_builds_no_graph():
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    assert cm.is_grad_enabled()
    with cm.no_grad():
        assert not cm.is_grad_enabled()
        y = (x * 2).exp().sum()
        with cm.enable_grad():
            z = (x * 3).sum()
    assert cm.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and y.op is None
    assert z.requires_grad and z.op == "sum"
    with pytest.raises(RuntimeError):
        y.backward()

    @cm.no_grad()
    def f(t):
        return t * t

    assert not f(x).requires_grad and cm.is_grad_enabled()
    with pytest.raises(ZeroDivisionError):
        with cm.no_grad():
            1 / 0
    assert cm.is_grad_enabled()


def test_detach_stops_gradients():
    x = cm.tensor([1.0, -2.0, 3.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.data, x.data)
    (x * d).sum().backward()                    # only one path carries gradient
    np.testing.assert_array_equal(x.grad, x.data)
    x.grad = None
    (x.exp().detach() * x).sum().backward()
    np.testing.assert_allclose(x.grad, np.exp(x.data))
    (g,) = cm.grad((x * x.detach() * x.detach()).sum(), [x])
    np.testing.assert_allclose(g.data, x.data ** 2)


def test_retain_grad_and_intermediate_grads():
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data)
    np.testing.assert_array_equal(x.grad, 18 * x.data)


# -- dtypes ---------------------------------------------------------------------------------------

FLOAT32_FUNCS = {
    "exp": lambda x: x.exp(),
    "log": lambda x: (x * x + 1.0).log(),
    "log1p": lambda x: (x * x).log1p(),
    "sqrt": lambda x: (x * x + 1.0).sqrt(),
    "abs": lambda x: x.abs(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "relu": lambda x: x.relu(),
    "clip": lambda x: x.clip(-0.5, 0.5),
    "leaky_relu": lambda x: cm.leaky_relu(x),
    "softplus": lambda x: cm.softplus(x),
    "pow scalar": lambda x: x ** 2 + 2 ** x - 1 / (x * x + 1),
    "pow tensor": lambda x: (x * x + 1.0) ** x,
    "div": lambda x: x / 3.0 - 3.0 / (x + 10.0),
    "sum": lambda x: x.sum(axis=0, keepdims=True) * x,
    "mean": lambda x: x.mean(axis=1) + x.mean(),
    "max": lambda x: x.max(axis=-1) + x.max(),
    "reshape/T": lambda x: x.reshape(3, 2).T * x,
    "broadcast_to": lambda x: x[0].broadcast_to((4, 3)),
    "getitem": lambda x: x[np.array([1, 1, 0]), 1:],
    "where": lambda x: cm.where(x.data > 0, x, 0.5 * x),
    "matmul": lambda x: x @ cm.tensor(np.ones((3, 2)), dtype=np.float32),
    "matmul 1-D": lambda x: x[0] @ x.T,
    "softmax": lambda x: cm.softmax(x, axis=1),
    "log_softmax": lambda x: cm.log_softmax(x, axis=0),
    "logsumexp": lambda x: cm.logsumexp(x, axis=None),
    "cross_entropy": lambda x: F.cross_entropy(x, [0, 2]),
    "nll_loss": lambda x: F.nll_loss(x, [1, 2], reduction="sum"),
    "mse": lambda x: F.mse_loss(x, np.zeros((2, 3), dtype=np.float32)),
    "bce": lambda x: F.binary_cross_entropy(x.sigmoid(), np.ones((2, 3), dtype=np.float32)),
    "bce_with_logits": lambda x: F.binary_cross_entropy_with_logits(x, np.ones((2, 3), dtype=np.float32)),
}


@pytest.mark.parametrize("name", list(FLOAT32_FUNCS))
def test_float32_stays_float32(name):
    f = FLOAT32_FUNCS[name]
    x0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=np.float32)
    x = cm.tensor(x0, requires_grad=True)
    y = f(x)
    assert y.dtype == np.float32, f"{name}: result is {y.dtype}"
    y.sum().backward()
    assert x.grad.dtype == np.float32
    (g,) = cm.grad(f(x).sum(), [x])
    assert g.dtype == np.float32
    (g2,) = cm.grad(f(x).sum(), [x], create_graph=True)
    assert g2.dtype == np.float32
    # and agrees with the float64 computation to float32 precision
    x64 = cm.tensor(x0.astype(np.float64), requires_grad=True)
    f(x64).sum().backward()
    np.testing.assert_allclose(x.grad, x64.grad, rtol=1e-4, atol=1e-5)


def test_float32_second_derivative_and_module():
    x = cm.tensor(np.array([0.5, -1.0], dtype=np.float32), requires_grad=True)
    (g,) = cm.grad(x.tanh().sum(), [x], create_graph=True)
    (h,) = cm.grad(g.sum(), [x])
    assert g.dtype == np.float32 and h.dtype == np.float32
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(3, 4, dtype=np.float32), cm.nn.Tanh(), cm.nn.Linear(4, 2, dtype=np.float32))
    out = model(np.ones((5, 3), dtype=np.float32))
    assert out.dtype == np.float32
    F.cross_entropy(out, np.zeros(5)).backward()
    assert all(p.grad.dtype == np.float32 for p in model.parameters())


def test_cm_grad_keeps_the_dtype_of_a_float32_input():
    """backward() casts a float64 contribution to a float32 leaf's dtype; cm.grad should too."""
    x = cm.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (x * np.ones(3)).sum().backward()      # float32 * float64 array -> float64 result
    assert x.grad.dtype == np.float32
    (g,) = cm.grad((x * np.ones(3)).sum(), [x])
    assert g.dtype == np.float32


def test_python_lists_meeting_float32_stay_float32():
    x = cm.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    assert (x * 2.0).dtype == np.float32                      # numbers: fine
    assert F.mse_loss(x, [0.0, 1.0, 2.0]).dtype == np.float32
    assert (x + [1.0, 2.0, 3.0]).dtype == np.float32


# -- errors ---------------------------------------------------------------------------------------

def test_shape_mismatch_errors_name_the_op_and_shapes():
    a = cm.tensor(np.ones((32, 16)), requires_grad=True)
    with pytest.raises(ValueError, match=r"^matmul \(32, 16\) @ \(8, 4\)"):
        a @ cm.tensor(np.ones((8, 4)))
    with pytest.raises(ValueError, match=r"^matmul \(32, 16\) @ \(8, 4\)"):
        a @ np.ones((8, 4))
    with pytest.raises(ValueError, match=r"^matmul \(3,\) @ \(2, 5\)"):
        cm.tensor(np.ones(3)) @ np.ones((2, 5))
    for symbol, name, fn in [("+", "add", lambda p, q: p + q), ("-", "sub", lambda p, q: p - q),
                             ("*", "mul", lambda p, q: p * q), ("/", "div", lambda p, q: p / q),
                             ("**", "pow", lambda p, q: p ** q)]:
        with pytest.raises(ValueError, match=rf"^{name} \(2, 3\) {re.escape(symbol)} \(4,\)"):
            fn(cm.tensor(np.ones((2, 3))), cm.tensor(np.ones(4)))
        with pytest.raises(ValueError, match=rf"^{name} \(4,\) {re.escape(symbol)} \(2, 3\)"):
            fn(np.ones(4), cm.tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"where.*\(2, 3\).*\(4,\)"):
        cm.where(np.ones((2, 3), dtype=bool), cm.tensor(np.ones((2, 3))), cm.tensor(np.ones(4)))
    with pytest.raises(ValueError, match=r"reshape \(2, 3\)"):
        cm.tensor(np.ones((2, 3))).reshape(4, 2)
    with pytest.raises(ValueError, match=r"broadcast_to \(2, 3\)"):
        cm.tensor(np.ones((2, 3))).broadcast_to((3, 3))
    with pytest.raises(IndexError, match=r"getitem \(2, 3\)"):
        cm.tensor(np.ones((2, 3)))[5]


def test_backward_upstream_gradient_of_the_wrong_shape():
    x = cm.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError):
        (x * 2).backward(np.ones(4))


@pytest.mark.parametrize("bad", [
    lambda: cm.tensor([1 + 2j, 3.0]),
    lambda: cm.tensor(np.array([1.0, 2.0], dtype=np.complex64)),
    lambda: cm.tensor(["a", "b"]),
    lambda: cm.tensor(np.array([1.0, None], dtype=object)),
    lambda: cm.tensor([1.0, 2.0], dtype=np.uint16),
    lambda: cm.tensor([1.0, 2.0], dtype=np.complex128),
    lambda: cm.tensor([1.0, 2.0], dtype=np.float16),
    lambda: cm.tensor(np.ones(2, dtype=np.float16)),
    lambda: cm.Tensor(np.array(["x"])),
    lambda: cm.tensor([1.0, 2.0], requires_grad=True) * np.array([1j, 2j]),
    lambda: cm.tensor([1.0, 2.0], requires_grad=True) + "a",
    lambda: cm.tensor([1.0, 2.0], requires_grad=True) * 1j,
], ids=["complex list", "complex64", "str", "object", "dtype=uint16", "dtype=complex", "dtype=float16", "float16",
        "Tensor(str)", "complex operand", "str operand", "complex scalar"])
def test_bad_dtypes_raise_type_error(bad):
    with pytest.raises(TypeError):
        bad()


def test_dtype_error_messages_are_clear():
    with pytest.raises(TypeError, match="complex128"):
        cm.tensor([1 + 2j])
    with pytest.raises(TypeError, match="uint16"):
        cm.tensor([1.0], dtype=np.uint16)
    # integer and boolean data keep their dtype (as torch.tensor); Tensor(data) makes floats
    assert cm.tensor(np.array([1, 2], dtype=np.int32)).dtype == np.int32
    assert cm.tensor([True, False]).dtype == np.bool_
    assert cm.Tensor(np.array([1, 2], dtype=np.int32)).dtype == np.float64


def test_errors_inside_modules_name_the_module():
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(3, 5), cm.nn.ReLU(), cm.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"^2 \(Linear\): matmul \(2, 5\) @ \(4, 2\)"):
        model(np.ones((2, 3)))
    model = cm.nn.Sequential(cm.nn.Linear(3, 5), cm.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"^1 \(Linear\): matmul \(2, 5\) @ \(4, 2\)"):
        model(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^0 \(Linear\)"):
        model(np.ones((2, 7)))

    class Inner(cm.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = cm.nn.Parameter(np.ones(4))

        def forward(self, x):
            return x + self.w

    class Net(cm.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = cm.nn.Sequential(cm.nn.Linear(3, 3), Inner())

        def forward(self, x):
            return self.layers(x)

    with pytest.raises(ValueError, match=r"^layers\.1 \(Inner\): add \(2, 3\) \+ \(4,\)"):
        Net()(np.ones((2, 3)))
    # outside any module there is no prefix
    with pytest.raises(ValueError, match=r"^add \(2, 3\) \+ \(4,\)"):
        cm.tensor(np.ones((2, 3))) + np.ones(4)
