"""GELU, z·Φ(z) (PyTorch's exact form), and the erf primitive it is built on: added by their
entries in the derivative table (calcml.ops) and one module class. Gradients and second
derivatives against central differences; the debugger's statistics, in the engine and on a
torch model."""
from __future__ import annotations

import math

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml import ops
from calcml.debug import probes
from fd import check_grad
from helpers import activation_layer_in_both


def np_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def np_gelu_derivative(x):
    Phi = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    return Phi + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def test_erf_is_the_c_librarys_and_its_gradient_by_central_differences():
    x = np.linspace(-7, 7, 1001)
    assert np.array_equal(ops.ERF.forward(x), [math.erf(v) for v in x])
    check_grad(lambda t: t.erf(), lambda a: np.vectorize(math.erf)(a), [np.random.default_rng(0).normal(size=(4, 3))])


def test_gelu_forward_and_gradient_by_central_differences():
    x = np.random.default_rng(0).normal(scale=2.5, size=(5, 4))
    check_grad(lambda t: F.gelu(t), np_gelu, [x])
    check_grad(lambda t: cm.nn.GELU()(t), np_gelu, [x], via="backward")


def test_gelu_second_derivative_by_central_differences_of_the_gradient():
    x = np.array([-4.0, -1.5, -0.3, 0.0, 0.8, 1.5, 5.0])
    t = cm.tensor(x, requires_grad=True)
    (g,) = cm.grad(F.gelu(t).sum(), [t], create_graph=True)
    np.testing.assert_allclose(g.data, np_gelu_derivative(x), rtol=1e-12, atol=1e-15)
    (h,) = cm.grad(g.sum(), [t])
    eps = 1e-5
    numeric = (np_gelu_derivative(x + eps) - np_gelu_derivative(x - eps)) / (2 * eps)
    np.testing.assert_allclose(h.data, numeric, rtol=1e-6, atol=1e-9)


def test_the_maximum_derivative_in_the_table_is_the_functions():
    z = np.linspace(-10, 10, 200_001)
    assert ops.GELU.activation.max_derivative == pytest.approx(np_gelu_derivative(z).max(), rel=1e-9)


def test_gelu_statistics_follow_the_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 5))
    x[:, 0] = -6.0 + 0.1 * rng.normal(size=64)   # derivative ≈ 0: saturated
    mean, dead, saturated = probes.activation_stats("gelu", cm.nn.GELU(), np_gelu(x), 0.01, x=x)
    assert mean == pytest.approx(np_gelu_derivative(x).mean(), rel=1e-12)
    assert dead is None and saturated == pytest.approx(1 / 5)


def test_a_gelu_layer_is_measured_the_same_in_both_frameworks():
    torch = pytest.importorskip("torch")
    la, lb = activation_layer_in_both(cm.nn.GELU(), torch.nn.GELU())
    assert lb.activation == "gelu" and lb.mean_local_derivative == pytest.approx(la.mean_local_derivative, rel=1e-12)
    from calcml.debug.torch_backend import activation_kind
    assert activation_kind(torch.nn.GELU(approximate="tanh")) is None   # another function: not measured as this one
