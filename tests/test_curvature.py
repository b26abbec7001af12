"""cm.hvp, cm.hessian and cm.curvature against exact answers.

References: closed-form Hessians (½xᵀAx gives (A+Aᵀ)/2; logistic regression gives X̃ᵀSX̃/n),
numpy.linalg.eigvalsh of an exactly known matrix, and central finite differences OF THE
GRADIENT (first-order backward at θ ± εv) for an MLP. Never the engine's second-order result
checked against itself.
"""
from __future__ import annotations

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F

from fd import numeric_hessian, numeric_hvp


def random_symmetric(n, seed, eigenvalues=None):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    if eigenvalues is None:
        eigenvalues = rng.standard_normal(n)
    A = Q @ np.diag(eigenvalues) @ Q.T
    return 0.5 * (A + A.T)


def quadratic(A, x0):
    """f = ½ xᵀAx over one parameter vector x (its exact Hessian is (A + Aᵀ)/2)."""
    x = cm.tensor(x0, requires_grad=True)
    At = cm.tensor(A)
    return (lambda: 0.5 * (x @ (At @ x))), [x]


# -- the Hessian of closed-form functions ---------------------------------------------------------

def test_hessian_of_quadratic_is_A():
    A = random_symmetric(6, seed=1)
    f, params = quadratic(A, np.random.default_rng(2).standard_normal(6))
    H = cm.hessian(f, params)
    assert H.shape == (6, 6) and H.dtype == np.float64
    np.testing.assert_allclose(H, A, rtol=0, atol=1e-13)


def test_hessian_of_nonsymmetric_quadratic_is_symmetric_part():
    A = np.random.default_rng(3).standard_normal((5, 5))
    assert not np.allclose(A, A.T)
    f, params = quadratic(A, np.random.default_rng(4).standard_normal(5))
    H = cm.hessian(f, params)
    np.testing.assert_allclose(H, 0.5 * (A + A.T), rtol=0, atol=1e-13)
    assert not np.allclose(H, A, atol=1e-3)


def test_hessian_order_over_several_parameters():
    """θ = concat(a.ravel(), B.ravel()), in the order given: the blocks land in the right places."""
    A = random_symmetric(8, seed=5)
    rng = np.random.default_rng(6)
    a = cm.tensor(rng.standard_normal(2), requires_grad=True)
    B = cm.tensor(rng.standard_normal((2, 3)), requires_grad=True)

    def f():
        Bf = B.reshape(6)
        return (0.5 * (a @ (cm.tensor(A[:2, :2]) @ a)) + a @ (cm.tensor(A[:2, 2:]) @ Bf)
                + 0.5 * (Bf @ (cm.tensor(A[2:, 2:]) @ Bf)))

    np.testing.assert_allclose(cm.hessian(f, [a, B]), A, rtol=0, atol=1e-13)
    # reversed parameter order: the same Hessian, permuted
    perm = np.r_[2:8, 0:2]
    np.testing.assert_allclose(cm.hessian(f, [B, a]), A[np.ix_(perm, perm)], rtol=0, atol=1e-13)


def logistic_problem(n=40, d=3, seed=7):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (rng.random(n) < 0.5).astype(float)
    w = cm.nn.Parameter(0.5 * rng.standard_normal(d), name="weight")
    b = cm.nn.Parameter(np.array([0.3]), name="bias")
    return X, y, w, b


def logistic_exact_hessian(X, y, w, b):
    """X̃ᵀSX̃/n with X̃ = [X, 1] and S = diag(p(1 − p)), p = σ(Xw + b)."""
    z = X @ w + b
    p = 1.0 / (1.0 + np.exp(-z))
    Xt = np.hstack([X, np.ones((len(X), 1))])
    return Xt.T @ (Xt * (p * (1 - p))[:, None]) / len(X)


def logistic_loss(X, y, w, b):
    z = cm.tensor(X) @ w + b
    return F.binary_cross_entropy_with_logits(z, cm.tensor(y))


def test_logistic_regression_hessian():
    X, y, w, b = logistic_problem()
    H = cm.hessian(lambda: logistic_loss(X, y, w, b), [w, b])
    np.testing.assert_allclose(H, logistic_exact_hessian(X, y, w.data, b.data), rtol=0, atol=1e-10)


def test_logistic_regression_hessian_with_l2_on_weights_only():
    X, y, w, b = logistic_problem()
    lam = 0.3
    reg = cm.reg.L2(lam)
    named = {"weight": w, "bias": b}
    assert [name for name, _ in reg.parameters(named)] == ["weight"]  # biases are not penalised
    H = cm.hessian(lambda: logistic_loss(X, y, w, b) + reg(named), [w, b])
    expected = logistic_exact_hessian(X, y, w.data, b.data)
    expected[:3, :3] += 2 * lam * np.eye(3)   # d²(λΣw²)/dw² = 2λI; nothing on the bias
    np.testing.assert_allclose(H, expected, rtol=0, atol=1e-10)


# -- HVPs against finite differences of the gradient ----------------------------------------------

def mlp_problem(seed=11):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((10, 3))
    y = rng.standard_normal((10, 1))
    arrays = [0.7 * rng.standard_normal((3, 4)), 0.1 * rng.standard_normal(4),
              0.7 * rng.standard_normal((4, 1)), 0.1 * rng.standard_normal(1)]

    def loss(W1, b1, W2, b2):
        h = (cm.tensor(X) @ W1 + b1).tanh()
        return ((h @ W2 + b2 - cm.tensor(y)) ** 2).mean()

    return arrays, loss


def test_hvp_matches_finite_differences_of_gradients_mlp():
    arrays, loss = mlp_problem()
    params = [cm.tensor(a, requires_grad=True) for a in arrays]
    rng = np.random.default_rng(12)
    v = [rng.standard_normal(a.shape) for a in arrays]
    hv = cm.hvp(lambda: loss(*params), params, v)
    assert all(isinstance(h, np.ndarray) and h.shape == a.shape for h, a in zip(hv, arrays))
    numeric = numeric_hvp(loss, arrays, v, eps=1e-5)
    for k in range(len(arrays)):
        np.testing.assert_allclose(hv[k], numeric[k], rtol=1e-6, atol=1e-8, err_msg=f"param {k}")
    # the parameters are untouched, and so are their .grad
    for p, a in zip(params, arrays):
        np.testing.assert_array_equal(p.data, a)
        assert p.grad is None


def test_mlp_hessian_columns_match_finite_differences_and_symmetry():
    arrays, loss = mlp_problem(seed=13)
    params = [cm.tensor(a, requires_grad=True) for a in arrays]
    H = cm.hessian(lambda: loss(*params), params)
    n = sum(a.size for a in arrays)
    assert H.shape == (n, n)
    # as computed, not symmetrised: symmetric up to rounding
    np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-13)
    numeric = numeric_hessian(loss, arrays, eps=1e-5)
    for j in range(n):
        np.testing.assert_allclose(H[:, j], numeric[:, j], rtol=1e-6, atol=1e-8, err_msg=f"column {j}")


def test_hvp_single_tensor_and_linear_loss():
    x = cm.tensor([1.0, -2.0, 3.0], requires_grad=True)
    hv = cm.hvp(lambda: (x * x * x).sum(), x, np.array([1.0, 1.0, 2.0]))
    np.testing.assert_allclose(hv, 6 * np.array([1.0, -2.0, 3.0]) * [1, 1, 2], atol=1e-14)
    # a linear loss has H = 0 (its gradient is constant)
    c = np.array([0.5, 1.0, -1.0])
    np.testing.assert_array_equal(cm.hessian(lambda: (x * cm.tensor(c)).sum(), [x]), np.zeros((3, 3)))


def test_bad_inputs():
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="scalar"):
        cm.hessian(lambda: x * x, [x])
    with pytest.raises(ValueError, match="does not require grad"):
        cm.hessian(lambda: (x * x).sum(), [cm.tensor([1.0])])
    with pytest.raises(ValueError, match="shape"):
        cm.hvp(lambda: (x * x).sum(), [x], [np.ones(3)])


# -- the size limit ----------------------------------------------------------------------------

def test_hessian_refuses_too_many_parameters():
    x = cm.tensor(np.ones(11), requires_grad=True)
    calls = []

    def f():
        calls.append(1)
        return (x * x).sum()

    with pytest.raises(ValueError) as info:
        cm.hessian(f, [x], max_size=10)
    message = str(info.value)
    assert "11 parameters" in message and "max_size=10" in message
    assert "11 Hessian-vector products" in message and "11×11" in message
    assert "max_size=..." in message
    assert calls == []  # refused before any work
    np.testing.assert_allclose(cm.hessian(f, [x], max_size=None), 2 * np.eye(11))
    big = cm.tensor(np.zeros(5001), requires_grad=True)
    with pytest.raises(ValueError, match="5001 parameters"):
        cm.hessian(lambda: (big * big).sum(), [big])


# -- eigenvalues -------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3])
def test_top_eigenvalues_of_known_matrix(k):
    """Lanczos for the largest ALGEBRAIC eigenvalues: a −40 of larger magnitude must not win."""
    n = 150
    rng = np.random.default_rng(21)
    spectrum = np.concatenate([[10.0, 9.0, 8.0, -40.0], rng.uniform(-15, 5, n - 4)])
    A = random_symmetric(n, seed=22, eigenvalues=spectrum)
    f, params = quadratic(A, rng.standard_normal(n))
    exact = np.sort(np.linalg.eigvalsh(A))[::-1][:k]
    got = cm.curvature.top_eigenvalues(f, params, k=k)   # iters=100 < n: converged, not exhausted
    assert got.shape == (k,)
    np.testing.assert_allclose(got, exact, rtol=1e-7, atol=0)
    np.testing.assert_allclose(got, [10.0, 9.0, 8.0][:k], rtol=1e-7)


def test_top_eigenvalues_of_mlp_hessian_and_vectors():
    arrays, loss = mlp_problem(seed=23)
    params = [cm.tensor(a, requires_grad=True) for a in arrays]
    f = lambda: loss(*params)  # noqa: E731
    H = cm.hessian(f, params)   # itself checked against finite differences above
    exact = np.sort(np.linalg.eigvalsh(0.5 * (H + H.T)))[::-1]
    assert np.min(np.diff(exact[:4])) < -1e-6   # distinct top eigenvalues
    values, vectors = cm.curvature.top_eigenvalues(f, params, k=3, return_vectors=True)
    np.testing.assert_allclose(values, exact[:3], rtol=1e-7, atol=1e-10)
    assert vectors.shape == (H.shape[0], 3)
    np.testing.assert_allclose(H @ vectors, vectors * values, atol=1e-6)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-8)


# -- Hutchinson: trace and diagonal ------------------------------------------------------------------

def test_trace_within_three_standard_errors():
    A = random_symmetric(20, seed=31, eigenvalues=np.linspace(-2, 6, 20))
    f, params = quadratic(A, np.zeros(20))
    estimate, se = cm.curvature.trace(f, params, samples=200, seed=0)
    assert se > 0
    assert abs(estimate - np.trace(A)) <= 3 * se
    # the standard error agrees with the exact variance of one draw, 2·Σᵢ≠ⱼ Aᵢⱼ²
    off = A - np.diag(np.diag(A))
    assert 0.7 < se / np.sqrt(2 * np.sum(off ** 2) / 200) < 1.3
    # another seed, another estimate, still within 3 SE
    estimate2, se2 = cm.curvature.trace(f, params, samples=200, seed=1)
    assert estimate2 != estimate and abs(estimate2 - np.trace(A)) <= 3 * se2


def test_trace_of_mlp_hessian():
    arrays, loss = mlp_problem(seed=33)
    params = [cm.tensor(a, requires_grad=True) for a in arrays]
    f = lambda: loss(*params)  # noqa: E731
    exact = np.trace(cm.hessian(f, params))
    estimate, se = cm.curvature.trace(f, params, samples=100)
    assert 0 < se and abs(estimate - exact) <= 3 * se


def test_trace_and_diagonal_exact_for_diagonal_hessian():
    """Rademacher z has zᵢ² = 1: with H diagonal every draw is exact, standard error 0."""
    d = np.array([1.0, -2.0, 3.5, 0.25])
    x = cm.tensor(np.ones(4), requires_grad=True)
    f = lambda: 0.5 * (cm.tensor(d) * x * x).sum()  # noqa: E731
    estimate, se = cm.curvature.trace(f, [x], samples=10)
    assert estimate == pytest.approx(d.sum(), abs=1e-14) and se == pytest.approx(0, abs=1e-14)
    diag, diag_se = cm.curvature.diagonal(f, [x], samples=10)
    np.testing.assert_allclose(diag[0], d, atol=1e-14)
    np.testing.assert_allclose(diag_se[0], 0, atol=1e-14)


def test_diagonal_near_exact_diagonal():
    arrays, loss = mlp_problem(seed=35)
    params = [cm.tensor(a, requires_grad=True) for a in arrays]
    f = lambda: loss(*params)  # noqa: E731
    exact = np.diag(cm.hessian(f, params))
    diag, se = cm.curvature.diagonal(f, params, samples=300, seed=0)
    assert [d.shape for d in diag] == [a.shape for a in arrays] == [s.shape for s in se]
    diag = np.concatenate([d.ravel() for d in diag])
    se = np.concatenate([s.ravel() for s in se])
    assert np.all(np.abs(diag - exact) <= 4 * se + 1e-12)
    # it is an estimate, not the answer by another route: some error, and SEs that shrink with samples
    assert np.max(np.abs(diag - exact)) > 1e-8
    _, se_small = cm.curvature.diagonal(f, params, samples=30, seed=0)
    assert np.median(np.concatenate([s.ravel() for s in se_small])) > 2 * np.median(se)


def test_hutchinson_on_one_operator_matches_the_separate_estimates():
    """trace and diagonal from one set of products equal the public functions with the same seed."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((6, 6))
    A = A + A.T
    x = cm.tensor(rng.standard_normal(6), requires_grad=True)
    f = lambda: 0.5 * (x @ (cm.tensor(A) @ x))
    op = cm.curvature.HessianOperator(f(), [x])
    both = cm.curvature.hutchinson(op, samples=20, seed=7)
    tr, se = cm.curvature.trace(f, [x], samples=20, seed=7)
    diag, dse = cm.curvature.diagonal(f, [x], samples=20, seed=7)
    assert both.trace == pytest.approx(tr, rel=1e-12)
    assert both.trace_se == pytest.approx(se, rel=1e-12)
    np.testing.assert_allclose(both.diagonal[0], diag[0], rtol=1e-12)
    np.testing.assert_allclose(both.diagonal_se[0], dse[0], rtol=1e-12)
    assert cm.curvature.lanczos(op, k=1)[0] == pytest.approx(np.linalg.eigvalsh(A)[-1], rel=1e-8)
