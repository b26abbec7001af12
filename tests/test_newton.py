"""cm.optim.Newton against exact answers: the one-step minimum of a quadratic, quadratic
convergence on logistic regression (gradients recomputed in plain numpy), and the damped
(Levenberg–Marquardt) fallback at a saddle."""
from __future__ import annotations

import math

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F

STATE_KEYS = {"step", "loss", "n_params", "grad_norm", "newton_decrement", "min_eigenvalue",
              "max_eigenvalue", "condition_number", "positive_definite", "damping", "damping_used",
              "damped", "step_norm", "message"}


def make_closure(opt, loss_fn):
    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    return closure


# -- a convex quadratic: one step, exact ----------------------------------------------------------

def test_one_step_to_the_minimum_of_a_quadratic():
    """L = ½θᵀAθ − bᵀθ: g = Aθ − b, H = A, so θ − A⁻¹g = A⁻¹b exactly; ½·decrement² = L(θ) − L*."""
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 5))
    A = M @ M.T + 0.5 * np.eye(5)
    b = rng.standard_normal(5)
    theta0 = rng.standard_normal(5)
    theta = cm.nn.Parameter(theta0.copy())
    loss_fn = lambda: 0.5 * (theta @ (cm.tensor(A) @ theta)) - cm.tensor(b) @ theta  # noqa: E731
    opt = cm.optim.Newton([theta], lr=1.0, damping=0.0)
    returned = opt.step(make_closure(opt, loss_fn))
    assert isinstance(returned, cm.Tensor)

    optimum = np.linalg.solve(A, b)
    np.testing.assert_allclose(theta.data, optimum, rtol=0, atol=1e-12)
    info = opt.state_info
    assert STATE_KEYS <= set(info)
    g = A @ theta0 - b
    assert info["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert info["newton_decrement"] == pytest.approx(math.sqrt(g @ np.linalg.solve(A, g)), rel=1e-12)
    L = lambda t: 0.5 * t @ A @ t - b @ t  # noqa: E731
    assert 0.5 * info["newton_decrement"] ** 2 == pytest.approx(L(theta0) - L(optimum), rel=1e-10)
    eig = np.linalg.eigvalsh(A)
    assert info["min_eigenvalue"] == pytest.approx(eig[0], rel=1e-10)
    assert info["max_eigenvalue"] == pytest.approx(eig[-1], rel=1e-10)
    assert info["condition_number"] == pytest.approx(eig[-1] / eig[0], rel=1e-9)
    assert info["positive_definite"] is True and info["damped"] is False
    assert info["damping_used"] == 0.0 and info["n_params"] == 5 and info["step"] == 1
    assert info["step_norm"] == pytest.approx(np.linalg.norm(optimum - theta0), rel=1e-10)
    assert info["loss"] == pytest.approx(L(theta0), rel=1e-12)


def test_lr_and_damping_enter_the_step():
    """θ ← θ − η·(H + λI)⁻¹g, per the docstring."""
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    b = np.array([1.0, -1.0])
    theta0 = np.array([0.4, 0.9])
    theta = cm.nn.Parameter(theta0.copy())
    opt = cm.optim.Newton([theta], lr=0.5, damping=0.7)
    opt.step(make_closure(opt, lambda: 0.5 * (theta @ (cm.tensor(A) @ theta)) - cm.tensor(b) @ theta))
    d = np.linalg.solve(A + 0.7 * np.eye(2), A @ theta0 - b)
    np.testing.assert_allclose(theta.data, theta0 - 0.5 * d, rtol=0, atol=1e-14)
    assert opt.state_info["damping_used"] == 0.7 and opt.state_info["damped"] is False


# -- logistic regression: quadratic convergence --------------------------------------------------

def moons_problem():
    X, y = cm.data.moons(n=200, noise=0.3, seed=0)   # not linearly separable: a finite minimum
    return X, y.astype(float), 1e-3


def numpy_gradient(X, y, lam, w, b):
    """∇ of mean BCE(σ(Xw + b), y) + λΣw², in plain numpy: Xᵀ(p − y)/n + 2λw and mean(p − y)."""
    p = 1.0 / (1.0 + np.exp(-(X @ w + b)))
    return np.r_[X.T @ (p - y) / len(X) + 2 * lam * w, np.mean(p - y)]


def logistic_setup(X, y, lam):
    w = cm.nn.Parameter(np.zeros(2), name="weight")
    b = cm.nn.Parameter(np.zeros(1), name="bias")
    reg = cm.reg.L2(lam)

    def loss_fn():
        z = cm.tensor(X) @ w + b
        return F.binary_cross_entropy_with_logits(z, cm.tensor(y)) + reg({"weight": w, "bias": b})

    return w, b, loss_fn


def test_newton_converges_quadratically_on_logistic_regression():
    X, y, lam = moons_problem()
    w, b, loss_fn = logistic_setup(X, y, lam)
    opt = cm.optim.Newton([w, b], lr=1.0, damping=0.0)
    closure = make_closure(opt, loss_fn)
    norms = []   # ‖g_k‖ at θ_k, recomputed in numpy (independent of the engine)
    for k in range(10):
        g = numpy_gradient(X, y, lam, w.data, b.data)
        norms.append(np.linalg.norm(g))
        opt.step(closure)
        assert opt.state_info["grad_norm"] == pytest.approx(norms[-1], rel=1e-9, abs=1e-15)
        assert opt.state_info["positive_definite"] is True
    norms.append(np.linalg.norm(numpy_gradient(X, y, lam, w.data, b.data)))
    assert min(norms) < 1e-10
    first_tiny = next(k for k, g in enumerate(norms) if g < 1e-10)
    assert first_tiny <= 10

    # the quadratic pattern: g_{k+1} ≈ C·g_k² (C constant), i.e. log g_{k+1} ≈ 2·log g_k for
    # small g, while the linear ratio g_{k+1}/g_k goes to 0. Use the steps above the rounding
    # floor (~2e-17 here).
    tail = [(a, c) for a, c in zip(norms, norms[1:]) if a < 1e-2 and c > 1e-16]
    assert len(tail) >= 3, norms
    constants = [c / a ** 2 for a, c in tail]
    assert max(constants) / min(constants) < 2, constants
    ratios = [c / a for a, c in tail]
    assert all(r2 < 0.1 * r1 for r1, r2 in zip(ratios, ratios[1:])), ratios   # superlinear
    exponents = [math.log(c) / math.log(a) for a, c in tail]
    assert exponents[-1] > 1.8 and all(e > 1.5 for e in exponents), exponents

    # plain gradient descent with the safe step 1/L (L = λmax(X̃ᵀX̃)/(4n) + 2λ bounds H everywhere)
    # is still far after the same number of steps
    w2, b2, loss_fn2 = logistic_setup(X, y, lam)
    Xt = np.hstack([X, np.ones((len(X), 1))])
    L = np.linalg.eigvalsh(Xt.T @ Xt)[-1] / (4 * len(X)) + 2 * lam
    sgd = cm.optim.SGD([w2, b2], lr=1.0 / L)
    for _ in range(first_tiny):
        sgd.zero_grad()
        loss_fn2().backward()
        sgd.step()
    assert np.linalg.norm(numpy_gradient(X, y, lam, w2.data, b2.data)) > 1e-3


def test_newton_with_default_damping_still_converges():
    X, y, lam = moons_problem()
    w, b, loss_fn = logistic_setup(X, y, lam)
    opt = cm.optim.Newton([w, b])   # lr=1, damping=1e-4
    closure = make_closure(opt, loss_fn)
    for _ in range(10):
        opt.step(closure)
    assert np.linalg.norm(numpy_gradient(X, y, lam, w.data, b.data)) < 1e-10


# -- non-convex: the damped fallback --------------------------------------------------------------

def test_saddle_reports_indefinite_hessian_and_takes_a_descent_step():
    """L = x² − y² at (0.1, 1): H = diag(2, −2). The plain Newton step goes to the saddle (0, 0),
    UPHILL (L rises from −0.99 to 0); the damped step must go down."""
    xy = cm.nn.Parameter(np.array([0.1, 1.0]))
    sign = cm.tensor([1.0, -1.0])
    loss_fn = lambda: (sign * xy * xy).sum()  # noqa: E731
    before = float(loss_fn().data)
    g = np.array([0.2, -2.0])
    plain = np.array([0.1, 1.0]) - np.linalg.solve(np.diag([2.0, -2.0]), g)
    np.testing.assert_allclose(plain, 0, atol=1e-15)   # what undamped Newton would do

    opt = cm.optim.Newton([xy], lr=1.0, damping=1e-4)
    opt.step(make_closure(opt, loss_fn))
    info = opt.state_info
    assert info["positive_definite"] is False
    assert info["min_eigenvalue"] == pytest.approx(-2.0, abs=1e-12)
    assert info["max_eigenvalue"] == pytest.approx(2.0, abs=1e-12)
    assert info["condition_number"] == math.inf
    assert info["damped"] is True and info["damping"] == 1e-4
    lam = info["damping_used"]
    assert lam >= 4.0 and np.all(np.linalg.eigvalsh(np.diag([2.0, -2.0]) + lam * np.eye(2)) > 0)
    assert "not positive definite" in info["message"] and "damping raised" in info["message"]
    # the step is (H + λI)⁻¹g with the λ reported, finite, and downhill
    d = g / (np.array([2.0, -2.0]) + lam)
    np.testing.assert_allclose(xy.data, np.array([0.1, 1.0]) - d, rtol=0, atol=1e-14)
    assert np.all(np.isfinite(xy.data))
    assert float(loss_fn().data) < before
    assert info["newton_decrement"] == pytest.approx(math.sqrt(g @ d), rel=1e-12)


def test_nonconvex_steps_keep_descending():
    """L = ¼x⁴ − ½x² + y²: H = diag(3x² − 1, 2) is indefinite for |x| < 1/√3. From x = 0.1 the
    damped steps leave the concave region and then Newton converges to the minimum (±1, 0)."""
    p = cm.nn.Parameter(np.array([0.1, 0.5]))
    loss_fn = lambda: 0.25 * p[0] ** 4 - 0.5 * p[0] ** 2 + p[1] ** 2  # noqa: E731
    opt = cm.optim.Newton([p])
    closure = make_closure(opt, loss_fn)
    losses, definite = [], []
    for _ in range(25):
        losses.append(float(loss_fn().data))
        opt.step(closure)
        definite.append(opt.state_info["positive_definite"])
    assert definite[0] is False and definite[-1] is True
    assert all(b <= a + 1e-15 for a, b in zip(losses, losses[1:])), losses
    np.testing.assert_allclose(p.data, [1.0, 0.0], atol=1e-8)


# -- interface ----------------------------------------------------------------------------------

def test_newton_refuses_too_many_parameters():
    with pytest.raises(ValueError) as info:
        cm.optim.Newton([cm.nn.Parameter(np.zeros(3)), cm.nn.Parameter(np.zeros((2, 2)))], max_size=6)
    assert "7 parameters" in str(info.value) and "max_size=" in str(info.value)
    cm.optim.Newton([cm.nn.Parameter(np.zeros(7))], max_size=7)   # at the limit: fine
    with pytest.raises(ValueError, match="damping"):
        cm.optim.Newton([cm.nn.Parameter(np.zeros(2))], damping=-1.0)


def test_newton_needs_a_closure_returning_the_loss_tensor():
    p = cm.nn.Parameter(np.array([1.0, 2.0]))
    opt = cm.optim.Newton([p])
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(TypeError, match="loss Tensor"):
        opt.step(lambda: float(((p * p).sum()).data))
    np.testing.assert_array_equal(p.data, [1.0, 2.0])   # nothing moved


def test_newton_keeps_float32():
    p = cm.nn.Parameter(np.array([1.0, -2.0], dtype=np.float32))
    opt = cm.optim.Newton([p], damping=0.0)
    opt.step(make_closure(opt, lambda: ((p - 3.0) ** 2).sum()))
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.data, [3.0, 3.0], atol=1e-6)
