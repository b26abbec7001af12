"""The Bayesian sample models, run headless through the debugger's Session: no warnings, and the
posterior each one promises, checked against an independent reference.

  bayes_linear_exact   VI on Bayesian linear regression against the closed-form posterior
  bayes_regression     the predictive spread of a Bayesian network grows away from the data
  hmc_logreg           cm.bayes.HMC on a logistic regression against importance sampling
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import calcml as cm
from calcml.debug import Session, load_model_file

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


def run(name, on_step=None):
    spec = load_model_file(str(SAMPLES / f"{name}.py"))
    s = Session(spec)
    final = s.run_to_end(on_step=on_step)
    return spec, s, final


def started(session) -> set:
    return {e.kind for e in session.warnings if e.event == "start"}


def batch_means(values, batches=20):
    """(average, standard error) of a correlated series, elementwise over trailing axes."""
    values = np.asarray(values)
    n = len(values) // batches * batches
    means = values[:n].reshape(batches, -1, *values.shape[1:]).mean(axis=1)
    return means.mean(axis=0), means.std(axis=0, ddof=1) / math.sqrt(batches)


# -- VI against the exact posterior ----------------------------------------------------------------

def test_bayes_linear_exact_finds_the_mean_field_optimum():
    spec, s, final = run("bayes_linear_exact")
    assert started(s) == set() and s.state == "finished" and s.step_count == spec.steps
    ns = spec.namespace
    X, y = spec.data
    sn, prior = ns["noise_sigma"], ns["prior_sigma"]
    # the file's exact posterior, recomputed independently: the mean is the ridge solution
    ridge = np.linalg.solve(X.T @ X + (sn / prior) ** 2 * np.eye(3), X.T @ y[:, 0])
    np.testing.assert_allclose(ns["exact_mean"], ridge, rtol=1e-10)
    precision = X.T @ X / sn ** 2 + np.eye(3) / prior ** 2
    np.testing.assert_allclose(ns["marginal_std"] ** 2, np.diag(np.linalg.inv(precision)), rtol=1e-10)

    layer = spec.model
    mu, sigma = layer.weight_mu.data.ravel(), layer.weight_sigma.ravel()
    assert np.all(np.abs(mu / ns["exact_mean"] - 1) < 0.02), (mu, ns["exact_mean"])
    assert np.all(np.abs(sigma / ns["exact_std"] - 1) < 0.10), (sigma, ns["exact_std"])
    # mean field is overconfident where the features are correlated: σ is the conditional width
    assert np.all(sigma[:2] < 0.75 * ns["marginal_std"][:2])
    terms = layer.last_elbo.values()
    assert terms["kl"] > 0 and terms["loss"] == pytest.approx(final.loss, rel=1e-12)


# -- the predictive spread of a Bayesian network --------------------------------------------------

def test_bayes_regression_is_unsure_away_from_the_data():
    spec, s, final = run("bayes_regression")
    assert started(s) == set() and s.state == "finished" and s.step_count == spec.steps
    model, (X, _) = spec.model, spec.data
    cm.manual_seed(1)
    at_data = cm.bayes.predictive(model, X, samples=500).std.ravel()
    far = cm.bayes.predictive(model, np.array([[-6.0], [0.0], [6.0]]), samples=500)
    outside_left, between, outside_right = far.std.ravel()
    typical = float(np.mean(at_data))
    assert between > 1.2 * typical, (between, typical)
    assert min(outside_left, outside_right) > 2 * typical, (far.std.ravel(), typical)
    assert min(outside_left, outside_right) > 1.2 * float(np.max(at_data))
    assert model.training                                       # predictive left the mode alone
    # posterior σ per layer: small where the data constrain the weights, near the prior between
    sigma = {name: float(np.mean(layer.weight_sigma)) for name, layer in cm.bayes.bayesian_layers(model)}
    assert sigma["2"] > 0.5 and sigma["0"] < 0.2 and sigma["4"] < 0.2, sigma
    assert model.last_elbo.values()["kl"] > 0


# -- HMC against importance sampling ---------------------------------------------------------------

def log_posterior(theta, A, y, prior_sigma):
    """log p(θ|D) + const for rows θ = (w₁, w₂, b), vectorised; A = [X, 1]."""
    z = theta @ A.T
    log_prior = -(theta * theta).sum(axis=1) / (2 * prior_sigma ** 2)
    return (z * y).sum(axis=1) - np.logaddexp(0.0, z).sum(axis=1) + log_prior


def importance_reference(A, y, prior_sigma, draws=40_000):
    """The posterior mean and std (with the mean's standard error) by self-normalised importance
    sampling from the Laplace approximation widened by √2: independent of HMC and of calcml."""
    theta = np.zeros(3)
    for _ in range(50):  # Newton to the MAP
        p = 1 / (1 + np.exp(-(A @ theta)))
        g = A.T @ (p - y) + theta / prior_sigma ** 2
        H = A.T @ (A * (p * (1 - p))[:, None]) + np.eye(3) / prior_sigma ** 2
        theta = theta - np.linalg.solve(H, g)
    L = np.linalg.cholesky(2.0 * np.linalg.inv(H))
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((draws, 3))
    samples = theta + eps @ L.T
    log_w = log_posterior(samples, A, y, prior_sigma) + 0.5 * (eps * eps).sum(axis=1)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = w @ samples
    std = np.sqrt(w @ (samples - mean) ** 2)
    se = np.sqrt((w[:, None] ** 2 * (samples - mean) ** 2).sum(axis=0))
    assert 1 / np.sum(w * w) > draws / 3             # the proposal fits: a large effective sample
    return theta, mean, std, se


def test_hmc_logreg_samples_the_posterior():
    states = []
    holder = {}

    def keep(snap):
        model, opt = holder["spec"].model, holder["spec"].optimizer
        if opt.state_info["kept"] > 0:
            states.append(np.concatenate([model.weight.data.ravel(), model.bias.data.ravel()]))

    spec = load_model_file(str(SAMPLES / "hmc_logreg.py"))
    holder["spec"] = spec
    s = Session(spec)
    final = s.run_to_end(on_step=keep)
    assert started(s) == set() and s.state == "finished"
    opt, model = spec.optimizer, spec.model
    info = final.optimizer_state
    assert info["kept"] == spec.steps - opt.burn_in == len(states) == 300
    assert 0.7 < info["acceptance_rate"] <= 1.0

    X, y = spec.data
    A = np.c_[X, np.ones(len(X))]
    MAP, ref_mean, ref_std, ref_se = importance_reference(A, y.ravel(), spec.namespace["prior_sigma"])
    states = np.array(states)
    m, se = batch_means(states)
    assert np.all(se < 0.1), f"the chain mixes too slowly: standard errors {se}"
    assert np.all(np.abs(m - ref_mean) < 4 * np.sqrt(se ** 2 + ref_se ** 2)), (m, ref_mean, se)
    # the optimiser's running statistics are those of the kept states
    np.testing.assert_allclose(opt.posterior_mean(model.weight).ravel(), m[:2], rtol=1e-10)
    np.testing.assert_allclose(opt.posterior_std(model.bias), states[:, 2].std(ddof=1), rtol=1e-8)
    # the spread: the posterior's, not a tempered one's (√100 = 10 times wider)
    std = np.concatenate([opt.posterior_std(model.weight).ravel(), opt.posterior_std(model.bias)])
    assert np.all(np.abs(std / ref_std - 1) < 0.3), (std, ref_std)
    # the loss the debugger showed is U = −log p(θ|D) up to one constant
    U = info["potential"]
    theta = np.concatenate([model.weight.data.ravel(), model.bias.data.ravel()])
    const = U + log_posterior(theta[None], A, y.ravel(), spec.namespace["prior_sigma"])[0]
    assert const == pytest.approx(0.0, abs=1e-9)
    assert np.linalg.norm(ref_mean - MAP) > 0.1            # the mean is not the MAP: a skewed posterior
