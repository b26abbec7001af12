"""cm.bayes (Normal, KL, ELBO, Monte Carlo) and cm.nn.BayesLinear against independent references.

References: numerical integration of the Gaussian density on a grid, Monte Carlo estimates with
tolerances from their own standard errors, closed-form expectations (E[x²] = μ² + σ²,
E[eˣ] = e^(μ+σ²/2)) and Gauss–Hermite quadrature, central finite differences in float64
(tests/fd.py) with the random draw fixed by reseeding, and the exact posterior of Bayesian
linear regression.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import calcml as cm
from calcml.bayes import Normal, kl_divergence

from fd import assert_close, check_grad, numeric_grad


def np_softplus(x):
    return np.logaddexp(0.0, x)


def np_log_density(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)


def np_kl(mq, sq, mp, sp):
    return np.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2) - 0.5


def grid(mu, sigma, width=12.0, points=200001):
    return np.linspace(mu - width * sigma, mu + width * sigma, points)


# -- Normal: density, entropy, sampling ----------------------------------------------------------

@settings(max_examples=40, deadline=None, derandomize=True)
@given(mu=st.floats(-5, 5), sigma=st.floats(0.05, 20), x=st.floats(-30, 30))
def test_log_prob_is_the_gaussian_density(mu, sigma, x):
    lp = Normal(mu, sigma).log_prob(x)
    density = np.exp(-(x - mu) ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
    if density > 1e-300:
        assert lp.item() == pytest.approx(math.log(density), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("mu,sigma", [(0.0, 1.0), (1.5, 0.3), (-2.0, 4.0)])
def test_density_integrates_to_one_with_the_right_moments(mu, sigma):
    """∫p = 1, ∫x·p = μ, ∫(x−μ)²·p = σ² on a fine grid: the normalising constant and scale are right."""
    x = grid(mu, sigma)
    p = np.exp(Normal(mu, sigma).log_prob(x).data)
    assert np.trapezoid(p, x) == pytest.approx(1.0, abs=1e-9)
    assert np.trapezoid(x * p, x) == pytest.approx(mu, abs=1e-8)
    assert np.trapezoid((x - mu) ** 2 * p, x) == pytest.approx(sigma ** 2, rel=1e-8)


@pytest.mark.parametrize("sigma", [0.1, 1.0, 7.0])
def test_entropy_against_integral_and_monte_carlo(sigma):
    d = Normal(cm.tensor([0.3, -1.0]), sigma)
    h = d.entropy()
    assert h.shape == (2,)
    x = grid(0.3, sigma)
    lp = Normal(0.3, sigma).log_prob(x).data
    integral = -np.trapezoid(np.exp(lp) * lp, x)
    np.testing.assert_allclose(h.data, integral, rtol=1e-9)
    cm.manual_seed(0)
    samples = d.sample(50_000)
    values = -d.log_prob(samples).data
    se = values.std(axis=0, ddof=1) / math.sqrt(len(values))
    assert np.all(np.abs(values.mean(axis=0) - h.data) < 4 * se)


def test_rsample_uses_the_seeded_generator_and_broadcasts():
    mu = cm.tensor([0.0, 1.0, 2.0], requires_grad=True)
    d = Normal(mu, 0.5)
    cm.manual_seed(7)
    x = d.rsample((4,))
    eps = np.random.default_rng(7).standard_normal((4, 3))
    assert x.shape == (4, 3) and x.requires_grad
    np.testing.assert_allclose(x.data, mu.data + 0.5 * eps, rtol=0, atol=1e-15)
    cm.manual_seed(7)
    s = d.sample((4,))
    assert not s.requires_grad and s.is_leaf
    np.testing.assert_array_equal(s.data, x.data)
    assert Normal(cm.tensor(np.zeros((2, 1))), np.ones(3)).rsample(5).shape == (5, 2, 3)


def test_sample_moments():
    cm.manual_seed(1)
    d = Normal(np.array([1.0, -3.0]), np.array([0.5, 2.0]))
    s = d.sample(40_000).data
    n = len(s)
    assert np.all(np.abs(s.mean(axis=0) - [1.0, -3.0]) < 4 * np.array([0.5, 2.0]) / math.sqrt(n))
    # the sample variance of n normals has standard error σ²·√(2/(n−1))
    assert np.all(np.abs(s.var(axis=0, ddof=1) - [0.25, 4.0]) < 4 * np.array([0.25, 4.0]) * math.sqrt(2 / (n - 1)))


def test_sigma_must_be_positive():
    with pytest.raises(ValueError, match="σ must be > 0"):
        Normal(0.0, np.array([1.0, 0.0]))


def test_mean_stddev_variance():
    d = Normal(cm.tensor([1.0, 2.0]), cm.tensor([3.0, 0.5]))
    np.testing.assert_array_equal(d.mean.data, [1.0, 2.0])
    np.testing.assert_array_equal(d.stddev.data, [3.0, 0.5])
    np.testing.assert_array_equal(d.variance.data, [9.0, 0.25])


# -- KL divergence ---------------------------------------------------------------------------------

@pytest.mark.parametrize("q,p", [((0.0, 1.0), (0.0, 2.0)), ((1.0, 0.5), (-1.0, 1.5)),
                                 ((3.0, 2.0), (0.0, 1.0)), ((0.2, 0.1), (0.0, 0.3))])
def test_kl_closed_form_against_monte_carlo(q, p):
    """KL(q‖p) = E_q[log q(x) − log p(x)], estimated from 200 000 draws of q."""
    Q, P = Normal(*q), Normal(*p)
    closed = kl_divergence(Q, P).item()
    assert closed == pytest.approx(np_kl(*q, *p), rel=1e-12)
    cm.manual_seed(2)
    x = Q.sample(200_000)
    values = (Q.log_prob(x) - P.log_prob(x)).data
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert abs(values.mean() - closed) < 4 * se
    assert se < 0.05 * closed  # the check has teeth


@settings(max_examples=40, deadline=None, derandomize=True)
@given(mu=st.floats(-10, 10), sigma=st.floats(0.01, 50), mu2=st.floats(-10, 10), sigma2=st.floats(0.01, 50))
def test_kl_is_zero_on_itself_and_positive_otherwise(mu, sigma, mu2, sigma2):
    assert kl_divergence(Normal(mu, sigma), Normal(mu, sigma)).item() == 0.0
    kl = kl_divergence(Normal(mu, sigma), Normal(mu2, sigma2)).item()
    assert kl >= -1e-12
    assert kl == pytest.approx(np_kl(mu, sigma, mu2, sigma2), rel=1e-9, abs=1e-12)


def test_kl_is_elementwise():
    q = Normal(cm.tensor([[0.0, 1.0], [2.0, 3.0]]), cm.tensor([1.0, 2.0]))
    kl = kl_divergence(q, Normal(0.0, 1.5))
    expected = np_kl(np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([1.0, 2.0]), 0.0, 1.5)
    np.testing.assert_allclose(kl.data, expected, rtol=1e-12)


# -- gradients: reparameterisation unbiased, and against finite differences ----------------------

N_GRAD = 40_000


def mc_gradient(f, mu0, sigma0, seed):
    """∂/∂μ and ∂/∂σ of the MC mean of f(μ + σε) by the engine, and the draws ε (from which the
    tests form f'(x) and f'(x)·ε, the same gradients draw by draw, for the standard errors)."""
    mu = cm.tensor(mu0, requires_grad=True)
    sigma = cm.tensor(sigma0, requires_grad=True)
    cm.manual_seed(seed)
    x = Normal(mu, sigma).rsample(N_GRAD)
    f(x).mean().backward()
    eps = (x.data - mu0) / sigma0
    return mu.grad, sigma.grad, eps


@pytest.mark.parametrize("mu0,sigma0", [(0.7, 1.3), (-2.0, 0.4)])
def test_reparameterised_gradient_of_x_squared_is_unbiased(mu0, sigma0):
    """E[x²] = μ² + σ²: ∂/∂μ = 2μ, ∂/∂σ = 2σ."""
    g_mu, g_sigma, eps = mc_gradient(lambda x: x * x, mu0, sigma0, seed=3)
    x = mu0 + sigma0 * eps
    se_mu = (2 * x).std(ddof=1) / math.sqrt(N_GRAD)
    se_sigma = (2 * x * eps).std(ddof=1) / math.sqrt(N_GRAD)
    assert abs(g_mu - 2 * mu0) < 4 * se_mu
    assert abs(g_sigma - 2 * sigma0) < 4 * se_sigma


@pytest.mark.parametrize("mu0,sigma0", [(0.4, 0.8), (-1.0, 0.3)])
def test_reparameterised_gradient_of_exp_is_unbiased(mu0, sigma0):
    """E[eˣ] = e^(μ+σ²/2): ∂/∂μ = e^(μ+σ²/2), ∂/∂σ = σ·e^(μ+σ²/2)."""
    g_mu, g_sigma, eps = mc_gradient(lambda x: x.exp(), mu0, sigma0, seed=4)
    x = mu0 + sigma0 * eps
    truth = math.exp(mu0 + sigma0 ** 2 / 2)
    se_mu = np.exp(x).std(ddof=1) / math.sqrt(N_GRAD)
    se_sigma = (np.exp(x) * eps).std(ddof=1) / math.sqrt(N_GRAD)
    assert abs(g_mu - truth) < 4 * se_mu
    assert abs(g_sigma - sigma0 * truth) < 4 * se_sigma


@pytest.mark.parametrize("mu0,sigma0", [(0.4, 0.8), (1.5, 2.0)])
def test_reparameterised_gradient_of_tanh_is_unbiased(mu0, sigma0):
    """A bounded nonlinearity: ∂/∂μ E[tanh x] = E[tanh'(x)], ∂/∂σ = E[tanh'(x)·ε], the truth by
    Gauss–Hermite quadrature (exact to rounding for such a smooth integrand)."""
    g_mu, g_sigma, eps = mc_gradient(lambda x: x.tanh(), mu0, sigma0, seed=5)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)   # ∫ f(e) e^(−e²/2) de
    weights = weights / math.sqrt(2 * math.pi)
    d = 1 - np.tanh(mu0 + sigma0 * nodes) ** 2
    x = mu0 + sigma0 * eps
    dx = 1 - np.tanh(x) ** 2
    assert abs(g_mu - weights @ d) < 4 * dx.std(ddof=1) / math.sqrt(N_GRAD)
    assert abs(g_sigma - weights @ (d * nodes)) < 4 * (dx * eps).std(ddof=1) / math.sqrt(N_GRAD)


def _values(seed, shape=(2, 3)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.uniform(0.3, 2.0, shape), rng.standard_normal(shape)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000))
def test_rsample_gradient_finite_differences(seed):
    mu, sigma, _ = _values(seed)

    def cm_fn(m, s):
        cm.manual_seed(seed)
        return Normal(m, s).rsample((4,))

    def np_fn(m, s):
        return m + s * np.random.default_rng(seed).standard_normal((4,) + m.shape)

    check_grad(cm_fn, np_fn, [mu, sigma])


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000))
def test_log_prob_entropy_kl_gradients_finite_differences(seed):
    mu, sigma, x = _values(seed)
    mu2, sigma2, _ = _values(seed + 1)
    check_grad(lambda m, s, v: Normal(m, s).log_prob(v), lambda m, s, v: np_log_density(v, m, s), [mu, sigma, x])
    check_grad(lambda s: Normal(0.0, s).entropy(), lambda s: 0.5 * np.log(2 * np.pi * np.e * s * s), [sigma])
    check_grad(lambda a, b, c, d: kl_divergence(Normal(a, b), Normal(c, d)), np_kl, [mu, sigma, mu2, sigma2])


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000))
def test_gradients_through_softplus_rho(seed):
    """σ = softplus(ρ), as BayesLinear parametrises it: d/dρ of rsample, log_prob and KL."""
    mu, _, x = _values(seed)
    rho = np.random.default_rng(seed + 2).uniform(-4, 2, mu.shape)

    def cm_sample(m, r):
        cm.manual_seed(seed)
        return Normal(m, cm.softplus(r)).rsample()

    check_grad(cm_sample, lambda m, r: m + np_softplus(r) * np.random.default_rng(seed).standard_normal(m.shape),
               [mu, rho])
    check_grad(lambda m, r, v: Normal(m, cm.softplus(r)).log_prob(v),
               lambda m, r, v: np_log_density(v, m, np_softplus(r)), [mu, rho, x])
    check_grad(lambda m, r: kl_divergence(Normal(m, cm.softplus(r)), Normal(0.0, 0.7)),
               lambda m, r: np_kl(m, np_softplus(r), 0.0, 0.7), [mu, rho])


# -- BayesLinear -----------------------------------------------------------------------------------

def test_bayes_linear_initialisation():
    cm.manual_seed(11)
    reference = cm.nn.Linear(4, 3)
    cm.manual_seed(11)
    layer = cm.nn.BayesLinear(4, 3, prior_sigma=0.5)
    np.testing.assert_array_equal(layer.weight_mu.data, reference.weight.data)
    np.testing.assert_array_equal(layer.bias_mu.data, reference.bias.data)
    np.testing.assert_allclose(layer.weight_sigma, 0.05, rtol=1e-12)
    np.testing.assert_allclose(layer.bias_sigma, 0.05, rtol=1e-12)
    assert [n for n, _ in layer.named_parameters()] == ["weight_mu", "weight_rho", "bias_mu", "bias_rho"]
    assert all(p.dtype == np.float64 for p in layer.parameters())
    np.testing.assert_allclose(cm.nn.BayesLinear(2, 2, init_sigma=0.2).weight_sigma, 0.2, rtol=1e-12)
    assert "prior_sigma=0.5" in repr(layer)
    with pytest.raises(ValueError):
        cm.nn.BayesLinear(2, 2, prior_sigma=0.0)


def test_bayes_linear_train_mode_draws_fresh_weights():
    cm.manual_seed(0)
    layer = cm.nn.BayesLinear(3, 2)
    x = np.random.default_rng(1).standard_normal((5, 3))
    assert layer.training and layer.sampling
    a, b = layer(x), layer(x)
    assert not np.allclose(a.data, b.data)
    # the draw: weight first, then bias, from the engine's generator
    cm.manual_seed(42)
    out = layer(x)
    rng = np.random.default_rng(42)
    w = layer.weight_mu.data + layer.weight_sigma * rng.standard_normal((2, 3))
    bias = layer.bias_mu.data + layer.bias_sigma * rng.standard_normal(2)
    np.testing.assert_allclose(out.data, x @ w.T + bias, rtol=1e-12, atol=1e-14)
    assert out.op == "linear"  # the same op as nn.Linear


def test_bayes_linear_eval_mode_uses_the_mean():
    cm.manual_seed(0)
    layer = cm.nn.BayesLinear(3, 2)
    layer.weight_rho.data[...] = 1.0  # large σ: sampling would be obvious
    x = np.random.default_rng(1).standard_normal((5, 3))
    layer.eval()
    expected = x @ layer.weight_mu.data.T + layer.bias_mu.data
    np.testing.assert_allclose(layer(x).data, expected, rtol=1e-13)
    np.testing.assert_array_equal(layer(x).data, layer(x).data)
    layer.sample_in_eval = True
    assert not np.allclose(layer(x).data, expected, atol=1e-3)
    layer.sample_in_eval = False
    layer.train()
    assert not np.allclose(layer(x).data, expected, atol=1e-3)


def test_bayes_linear_without_bias():
    cm.manual_seed(0)
    layer = cm.nn.BayesLinear(3, 1, bias=False, prior_sigma=2.0)
    assert layer.bias_sigma is None and layer.bias_posterior() is None
    assert [n for n, _ in layer.named_parameters()] == ["weight_mu", "weight_rho"]
    x = np.ones((2, 3))
    layer.eval()
    np.testing.assert_allclose(layer(x).data, x @ layer.weight_mu.data.T)
    s = layer.weight_sigma
    expected = np_kl(layer.weight_mu.data, s, 0.0, 2.0).sum()
    assert layer.kl().item() == pytest.approx(expected, rel=1e-12)


def test_bayes_linear_rejects_wrong_width():
    layer = cm.nn.BayesLinear(3, 2)
    with pytest.raises(ValueError, match="3 features"):
        layer(np.ones((4, 2)))


def test_bayes_linear_kl_closed_form():
    cm.manual_seed(5)
    layer = cm.nn.BayesLinear(4, 3, prior_sigma=0.8)
    rng = np.random.default_rng(6)
    layer.weight_rho.data[...] = rng.uniform(-3, 1, (3, 4))
    layer.bias_rho.data[...] = rng.uniform(-3, 1, 3)
    expected = (np_kl(layer.weight_mu.data, np_softplus(layer.weight_rho.data), 0.0, 0.8).sum()
                + np_kl(layer.bias_mu.data, np_softplus(layer.bias_rho.data), 0.0, 0.8).sum())
    kl = layer.kl()
    assert kl.shape == () and kl.item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(layer.weight_sigma, np_softplus(layer.weight_rho.data), rtol=1e-15)


def gaussian_ll(noise):
    return lambda out, y: Normal(out, noise).log_prob(y)


def test_elbo_gradients_finite_differences():
    """−ELBO/n (the loss) w.r.t. μ and ρ of two layers, the draws fixed by reseeding."""
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.BayesLinear(3, 4, prior_sigma=0.7), cm.nn.Tanh(),
                             cm.nn.BayesLinear(4, 1, prior_sigma=1.3))
    rng = np.random.default_rng(3)
    for layer in (model[0], model[2]):
        layer.weight_rho.data[...] = rng.uniform(-3, 0, layer.weight_rho.shape)
        layer.bias_rho.data[...] = rng.uniform(-3, 0, layer.bias_rho.shape)
    X = rng.standard_normal((6, 3))
    y = rng.standard_normal((6, 1))
    params = list(model.parameters())

    def loss(seed):
        cm.manual_seed(seed)
        return cm.bayes.elbo(model, gaussian_ll(0.5), X, y, samples=2, n_data=30).loss

    loss(9).backward()
    analytic = [p.grad.numpy().copy() for p in params]

    def numeric_loss(*arrays):
        saved = [p.data.copy() for p in params]
        for p, a in zip(params, arrays):
            p.data[...] = a
        with cm.no_grad():
            value = loss(9).item()
        for p, a in zip(params, saved):
            p.data[...] = a
        return value

    numeric = numeric_grad(numeric_loss, [p.data for p in params])
    for p, a, n in zip(model.named_parameters(), analytic, numeric):
        assert_close(a, n, what=p[0])


def test_elbo_terms_and_minibatch_scaling():
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.BayesLinear(2, 3), cm.nn.ReLU(), cm.nn.BayesLinear(3, 1))
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((8, 2)), rng.standard_normal((8, 1))
    cm.manual_seed(3)
    result = cm.bayes.elbo(model, gaussian_ll(0.3), X, y, samples=3, n_data=100)
    # the same three draws by hand
    cm.manual_seed(3)
    lls = [np_log_density(y, model(X).data, 0.3).sum() for _ in range(3)]
    expected_ll = 100 / 8 * np.mean(lls)
    kl = model[0].kl().item() + model[2].kl().item()
    assert result.expected_log_likelihood.item() == pytest.approx(expected_ll, rel=1e-12)
    assert result.kl.item() == pytest.approx(kl, rel=1e-12)
    assert cm.bayes.kl_loss(model).item() == pytest.approx(kl, rel=1e-12)
    assert result.elbo.item() == pytest.approx(expected_ll - kl, rel=1e-12)
    assert result.loss.item() == pytest.approx(-(expected_ll - kl) / 100, rel=1e-12)
    assert (result.samples, result.batch_size, result.n_data) == (3, 8, 100)
    assert model.last_elbo is result
    assert result.values()["kl"] == pytest.approx(kl)
    assert [n for n, _ in cm.bayes.bayesian_layers(model)] == ["0", "2"]
    # full batch by default; a batch larger than n_data (a validation set) is scaled down alike
    assert cm.bayes.elbo(model, gaussian_ll(0.3), X, y).n_data == 8
    cm.manual_seed(3)
    small = cm.bayes.elbo(model, gaussian_ll(0.3), X, y, samples=3, n_data=4)
    assert small.expected_log_likelihood.item() == pytest.approx(4 / 8 * np.mean(lls), rel=1e-12)
    with pytest.raises(ValueError, match="n_data"):
        cm.bayes.elbo(model, gaussian_ll(0.3), X, y, n_data=0)


def test_elbo_from_outputs_matches_elbo():
    """The form for code that already ran the forward pass (a loss(pred, y) function)."""
    cm.manual_seed(0)
    layer = cm.nn.BayesLinear(2, 1)
    X, y = np.ones((4, 2)), np.zeros((4, 1))
    cm.manual_seed(1)
    a = cm.bayes.elbo(layer, gaussian_ll(1.0), X, y, n_data=10)
    cm.manual_seed(1)
    b = cm.bayes.elbo_from_outputs(layer, gaussian_ll(1.0), layer(X), y, n_data=10)
    assert a.elbo.item() == b.elbo.item()


def test_kl_loss_without_bayesian_layers_is_zero():
    model = cm.nn.Sequential(cm.nn.Linear(2, 2))
    assert cm.bayes.kl_loss(model).item() == 0.0
    assert cm.bayes.bayesian_layers(model) == []


# -- variational inference on the conjugate linear model -----------------------------------------

def conjugate_problem(correlated: bool, n=40, d=3, prior_sigma=1.0, noise=0.5, seed=0):
    """y = Xw + noise, w ~ N(0, s²I): the posterior is N(m, S), S = (I/s² + XᵀX/σₙ²)⁻¹, m = S Xᵀy/σₙ²."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if correlated:
        X[:, 1] += 0.8 * X[:, 0]
    else:  # orthogonal columns: XᵀX diagonal, so S is diagonal
        Q, _ = np.linalg.qr(X)
        X = Q * math.sqrt(n) * np.array([1.0, 0.7, 1.3])
    y = (X @ np.array([1.5, -2.0, 0.8]) + noise * rng.standard_normal(n)).reshape(-1, 1)
    precision = np.eye(d) / prior_sigma ** 2 + X.T @ X / noise ** 2
    S = np.linalg.inv(precision)
    m = S @ X.T @ y[:, 0] / noise ** 2
    return X, y, m, S, precision


def fit_mean_field(X, y, prior_sigma=1.0, noise=0.5, steps=600, samples=4, seed=0):
    cm.manual_seed(seed)
    layer = cm.nn.BayesLinear(X.shape[1], 1, prior_sigma=prior_sigma, bias=False)
    opt = cm.optim.Adam(layer.parameters(), lr=0.05)
    for k in range(steps):
        opt.param_groups[0]["lr"] = 0.05 * 0.01 ** (k / steps)  # decay: the noisy gradients settle
        result = cm.bayes.elbo(layer, gaussian_ll(noise), X, y, samples=samples)
        opt.zero_grad()
        result.loss.backward()
        opt.step()
    return layer.weight_mu.data[0], layer.weight_sigma[0]


@pytest.mark.parametrize("correlated", [False, True])
def test_vi_recovers_the_conjugate_posterior(correlated):
    """Mean-field q = Πᵢ N(μᵢ, σᵢ²) fitted to a Gaussian posterior N(m, S) by maximising the ELBO
    has μ = m exactly and σᵢ² = 1/(S⁻¹)ᵢᵢ (one over the diagonal of the PRECISION), which is
    smaller than Sᵢᵢ unless the weights are uncorrelated a posteriori: mean field cannot express
    correlations and underestimates the marginal variances. With orthogonal columns S is diagonal
    and both agree, so the fitted σ is the posterior standard deviation √Sᵢᵢ; with correlated
    columns the test checks 1/(S⁻¹)ᵢᵢ, and that it is visibly not √Sᵢᵢ."""
    X, y, m, S, precision = conjugate_problem(correlated)
    mu, sigma = fit_mean_field(X, y)
    mean_field_sigma = 1.0 / np.sqrt(np.diag(precision))
    posterior_sd = np.sqrt(np.diag(S))
    np.testing.assert_allclose(mu, m, rtol=0.02)
    np.testing.assert_allclose(sigma, mean_field_sigma, rtol=0.10)
    if correlated:
        assert np.all(posterior_sd[:2] > 1.3 * mean_field_sigma[:2])
        assert np.all(sigma[:2] < 0.85 * posterior_sd[:2])
    else:
        np.testing.assert_allclose(mean_field_sigma, posterior_sd, rtol=1e-12)
        np.testing.assert_allclose(sigma, posterior_sd, rtol=0.10)


# -- Monte Carlo expectations ----------------------------------------------------------------------

def test_mc_expectation_mean_and_standard_error():
    """θ ~ N(1, 2²): E[θ²] = 5; the standard error halves when n quadruples."""
    cm.manual_seed(0)
    d = Normal(1.0, 2.0)
    small = cm.bayes.mc_expectation(lambda t: t * t, d.sample, 4_000)
    large = cm.bayes.mc_expectation(lambda t: t * t, d.sample, 16_000)
    assert small.n == 4_000 and large.n == 16_000
    assert abs(small.mean - 5.0) < 3 * small.stderr
    assert abs(large.mean - 5.0) < 3 * large.stderr
    assert small.stderr / large.stderr == pytest.approx(2.0, rel=0.12)
    # Var[θ²] = E[θ⁴] − 25 = (μ⁴ + 6μ²σ² + 3σ⁴) − 25 = 48
    assert large.std == pytest.approx(math.sqrt(48), rel=0.05)
    assert large.stderr == pytest.approx(large.std / math.sqrt(16_000))


def test_mc_expectation_of_arrays():
    cm.manual_seed(1)
    d = Normal(np.array([0.0, 3.0]), np.array([1.0, 0.1]))
    r = cm.bayes.mc_expectation(lambda t: np.asarray(t.data) + 1.0, d.sample, 2_000)
    assert r.mean.shape == r.stderr.shape == (2,)
    assert np.all(np.abs(r.mean - [1.0, 4.0]) < 4 * r.stderr)
    with pytest.raises(ValueError):
        cm.bayes.mc_expectation(lambda t: t, d.sample, 1)


def test_predictive_samples_in_eval_mode_and_restores_it():
    cm.manual_seed(0)
    layer = cm.nn.BayesLinear(2, 1)
    layer.weight_rho.data[...] = 0.0
    layer.eval()
    X = np.array([[1.0, 2.0], [0.0, 0.0]])
    r = cm.bayes.predictive(layer, X, samples=3_000)
    assert not layer.sample_in_eval and not layer.sampling
    # E[x wᵀ + b] = x μᵀ + b_μ; Var = Σⱼ xⱼ²σⱼ² + σ_b²
    mean = X @ layer.weight_mu.data.T + layer.bias_mu.data
    assert np.all(np.abs(r.mean - mean) < 4 * r.stderr)
    sd = np.sqrt((X ** 2) @ (layer.weight_sigma ** 2).T + layer.bias_sigma ** 2)
    np.testing.assert_allclose(r.std, sd, rtol=0.06)
