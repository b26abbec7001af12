"""L1 and L2 penalties: values, closed-form gradients, and which parameters they cover."""
import numpy as np
import pytest

import calcml as cm
from calcml.nn import functional as F


def _model():
    cm.manual_seed(3)
    return cm.nn.Sequential(cm.nn.Linear(3, 4), cm.nn.Tanh(), cm.nn.Linear(4, 1))


def _numeric_grad(f, array, eps=1e-6):
    out = np.zeros_like(array)
    for i in np.ndindex(array.shape):
        old = array[i]
        array[i] = old + eps
        plus = f()
        array[i] = old - eps
        minus = f()
        array[i] = old
        out[i] = (plus - minus) / (2 * eps)
    return out


@pytest.mark.parametrize("cls", [cm.reg.L1, cm.reg.L2])
def test_penalty_gradient_matches_finite_differences(cls):
    m = _model()
    r = cls(0.05)
    for name, p in r.parameters(m):
        numeric = _numeric_grad(lambda: r.value(m), p.data)
        np.testing.assert_allclose(r.grads(m)[name], numeric, rtol=1e-6, atol=1e-8)


def test_formulas_l2_is_2_lambda_theta_and_l1_is_lambda_sign():
    m = _model()
    w = m[0].weight.data
    np.testing.assert_allclose(cm.reg.L2(0.1).grads(m)["0.weight"], 0.2 * w)
    np.testing.assert_allclose(cm.reg.L1(0.1).grads(m)["0.weight"], 0.1 * np.sign(w))
    assert cm.reg.L2(0.1).value(m) == pytest.approx(0.1 * sum((p.data ** 2).sum() for n, p in
                                                              m.named_parameters() if "weight" in n))


def test_l1_subgradient_is_zero_at_zero():
    m = _model()
    m[0].weight.data[0, :] = 0.0
    g = cm.reg.L1(0.5).grads(m)["0.weight"]
    assert np.all(g[0] == 0.0) and np.all(np.abs(g[1:]) == 0.5)


def test_biases_are_excluded_by_default_and_can_be_included():
    m = _model()
    assert [n for n, _ in cm.reg.L2(0.1).parameters(m)] == ["0.weight", "2.weight"]
    assert len(cm.reg.L2(0.1, include_bias=True).parameters(m)) == 4
    only_first = cm.reg.L1(0.1, select=lambda name, p: name.startswith("0."))
    assert [n for n, _ in only_first.parameters(m)] == ["0.weight", "0.bias"]


def test_backward_of_the_penalty_equals_its_closed_form():
    m = _model()
    r = cm.reg.L2(0.3)
    r(m).backward()
    for name, g in r.grads(m).items():
        np.testing.assert_allclose(dict(m.named_parameters())[name].grad, g)
    assert m[0].bias.grad is None


@pytest.mark.parametrize("cls", [cm.reg.L1, cm.reg.L2])
def test_data_gradient_plus_penalty_gradient_is_the_total_gradient(cls):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    r = cls(0.02)
    a = _model()
    (F.mse_loss(a(x), y) + r(a)).backward()
    total = {n: p.grad.numpy().copy() for n, p in a.named_parameters()}
    b = _model()
    F.mse_loss(b(x), y).backward()
    data = {n: p.grad.numpy().copy() for n, p in b.named_parameters()}
    added = r.add_to_grads(b)
    for name, p in b.named_parameters():
        np.testing.assert_allclose(p.grad, total[name], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(p.grad - data[name], added.get(name, 0.0), atol=1e-14)


def test_negative_strength_is_refused():
    with pytest.raises(ValueError, match="λ"):
        cm.reg.L2(-1.0)


def test_l1_reaches_exact_zeros_where_l2_only_shrinks():
    # One irrelevant weight under each penalty, trained by proximal-free subgradient steps on
    # a loss that gives it no data gradient: L1 moves it by a constant lr*λ per step until it
    # crosses zero, L2 shrinks it by a constant factor and never reaches zero.
    w1 = cm.nn.Parameter(np.array([0.05]), name="weight")
    w2 = cm.nn.Parameter(np.array([0.05]), name="weight")
    l1, l2 = cm.reg.L1(0.01), cm.reg.L2(0.01)
    for _ in range(5):
        w1.data -= 1.0 * l1.grads([w1])["weight"]
        w2.data -= 1.0 * l2.grads([w2])["weight"]
    assert abs(w1.data[0]) < 1e-12
    assert w2.data[0] == pytest.approx(0.05 * 0.98 ** 5)
