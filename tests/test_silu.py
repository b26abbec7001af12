"""SiLU, z·σ(z): an activation added by its entry in the derivative table (calcml.ops) and one
module class. Its gradient and second derivative against central differences; the debugger's
statistics of it, in the engine and on a torch model, against the formula."""
from __future__ import annotations

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml.debug import probes
from fd import check_grad
from helpers import activation_layer_in_both


def np_silu(x):
    return x / (1.0 + np.exp(-x))


def np_silu_derivative(x):
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 + x * (1.0 - s))


def test_silu_forward_and_gradient_by_central_differences():
    x = np.random.default_rng(0).normal(scale=3.0, size=(5, 4))
    check_grad(lambda t: F.silu(t), np_silu, [x])
    check_grad(lambda t: cm.nn.SiLU()(t), np_silu, [x], via="backward")


def test_silu_second_derivative_by_central_differences_of_the_gradient():
    x = np.array([-4.0, -2.4, -0.3, 0.0, 0.8, 2.4, 6.0])
    t = cm.tensor(x, requires_grad=True)
    (g,) = cm.grad(F.silu(t).sum(), [t], create_graph=True)
    np.testing.assert_allclose(g.data, np_silu_derivative(x), rtol=1e-12)
    (h,) = cm.grad(g.sum(), [t])
    eps = 1e-5
    numeric = (np_silu_derivative(x + eps) - np_silu_derivative(x - eps)) / (2 * eps)
    np.testing.assert_allclose(h.data, numeric, rtol=1e-6, atol=1e-9)


def test_the_maximum_derivative_in_the_table_is_the_functions():
    z = np.linspace(-10, 10, 2_000_001)
    assert cm.ops.SILU.activation.max_derivative == pytest.approx(np_silu_derivative(z).max(), rel=1e-9)


def test_silu_statistics_follow_the_formula_and_saturation_is_by_size():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6))
    x[:, 0] = -2.4 + 0.01 * rng.normal(size=64)   # derivative ≈ −0.0998: small, not saturated
    x[:, 1] = -30.0 + rng.normal(size=64)          # derivative ≈ 0: saturated
    out = np_silu(x)
    mean, dead, saturated = probes.activation_stats("silu", cm.nn.SiLU(), out, 0.01, x=x)
    assert mean == pytest.approx(np_silu_derivative(x).mean(), rel=1e-12)
    assert dead is None and saturated == pytest.approx(1 / 6)


def test_a_silu_layer_is_measured_the_same_in_both_frameworks():
    torch = pytest.importorskip("torch")
    la, lb = activation_layer_in_both(cm.nn.SiLU(), torch.nn.SiLU())
    assert lb.activation == "silu" and lb.mean_local_derivative == pytest.approx(la.mean_local_derivative, rel=1e-12)
    assert lb.saturated_fraction == la.saturated_fraction and lb.dead_fraction is None
