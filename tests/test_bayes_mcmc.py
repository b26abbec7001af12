"""cm.bayes.hmc and cm.bayes.langevin against targets whose moments are known exactly.

MCMC draws are correlated, so the tolerances come from batch means: the chain is cut into 20
consecutive batches, and the spread of the batch averages gives the standard error of the
overall average, autocorrelation included. Each check also bounds that standard error, so a
chain that barely moves cannot pass by having a huge one.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import calcml as cm

SIGMA = np.array([[1.0, 0.8], [0.8, 1.0]])   # eigenvalues 1.8 and 0.2
PRECISION = np.linalg.inv(SIGMA)
MEAN = np.array([1.0, -1.0])
NARROW = np.array([1.0, -1.0]) / math.sqrt(2)  # the eigenvector of variance 0.2


def gaussian_log_prob(theta):
    """log N(θ; MEAN, SIGMA) up to a constant: −½(θ − m)ᵀ Σ⁻¹ (θ − m)."""
    d = theta - MEAN
    return (d @ (cm.tensor(PRECISION) @ d)) * -0.5


def batch_means(values, batches=20):
    """(average, standard error) of a correlated series, elementwise over trailing axes."""
    values = np.asarray(values)
    n = len(values) // batches * batches
    means = values[:n].reshape(batches, -1, *values.shape[1:]).mean(axis=1)
    return means.mean(axis=0), means.std(axis=0, ddof=1) / math.sqrt(batches)


def assert_moments(samples, mean, cov, z=4.0, max_se=0.07):
    m, se = batch_means(samples)
    assert np.all(se < max_se), f"the chain mixes too slowly: standard errors {se}"
    assert np.all(np.abs(m - mean) < z * se), f"mean {m} vs {mean} (standard errors {se})"
    d = samples - MEAN
    c, cse = batch_means(np.einsum("ni,nj->nij", d, d))
    assert np.all(cse < max_se), f"the chain mixes too slowly: standard errors {cse}"
    assert np.all(np.abs(c - cov) < z * cse), f"covariance {c} vs {cov} (standard errors {cse})"


def narrow_variance(samples):
    return batch_means(((samples - MEAN) @ NARROW) ** 2)


# -- HMC -------------------------------------------------------------------------------------------

def test_hmc_recovers_a_correlated_gaussian():
    cm.manual_seed(0)
    result = cm.bayes.hmc(gaussian_log_prob, np.zeros(2), steps=2000, step_size=0.3, leapfrog_steps=5,
                          burn_in=100)
    assert result.samples.shape == (2000, 2) and result.log_probs.shape == (2000,)
    assert result.method == "hmc"
    assert 0.8 < result.acceptance_rate <= 1.0
    assert_moments(result.samples, MEAN, SIGMA)
    # log_probs are those of the samples
    k = 123
    assert result.log_probs[k] == pytest.approx(gaussian_log_prob(cm.tensor(result.samples[k])).item(), rel=1e-12)


def test_hmc_on_a_non_gaussian_target():
    """p(θ) ∝ exp(−θ⁴/4): E[θ⁴] = 1 exactly (integrate θ·θ³e^(−θ⁴/4) by parts), E[θ²] by quadrature."""
    grid = np.linspace(-8, 8, 400_001)
    density = np.exp(-grid ** 4 / 4)
    second = np.trapezoid(grid ** 2 * density, grid) / np.trapezoid(density, grid)
    cm.manual_seed(1)
    result = cm.bayes.hmc(lambda t: (t ** 4).sum() * -0.25, np.array([0.5]), steps=1500, step_size=0.25,
                          leapfrog_steps=5, burn_in=100)
    theta = result.samples[:, 0]
    for values, truth in ((theta, 0.0), (theta ** 2, second), (theta ** 4, 1.0)):
        m, se = batch_means(values)
        assert se < 0.06 and abs(m - truth) < 4 * se


def test_hmc_energy_is_nearly_conserved_for_small_steps():
    """Leapfrog's energy error is O(ε²): with ε = 0.02 almost every proposal is accepted."""
    cm.manual_seed(2)
    result = cm.bayes.hmc(gaussian_log_prob, MEAN, steps=200, step_size=0.02, leapfrog_steps=20)
    assert result.acceptance_rate > 0.99


def test_hmc_rejects_diverging_trajectories():
    """ε = 1 > 2√0.2 makes leapfrog unstable along the narrow direction: proposals are rejected
    and the chain stays where it was."""
    cm.manual_seed(3)
    result = cm.bayes.hmc(gaussian_log_prob, MEAN, steps=50, step_size=1.0, leapfrog_steps=50)
    assert result.acceptance_rate < 0.1
    assert np.all(np.isfinite(result.samples))


def test_hmc_is_repeatable_and_keeps_the_shape():
    initial = np.zeros((2, 2))

    def log_prob(t):
        return (t * t).sum() * -0.5

    cm.manual_seed(4)
    a = cm.bayes.hmc(log_prob, initial, steps=20, step_size=0.2)
    cm.manual_seed(4)
    b = cm.bayes.hmc(log_prob, initial, steps=20, step_size=0.2)
    assert a.samples.shape == (20, 2, 2)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.acceptance_rate == b.acceptance_rate
    np.testing.assert_array_equal(initial, 0.0)  # the start is not modified


def test_mcmc_argument_errors():
    with pytest.raises(ValueError, match="log p"):
        cm.bayes.hmc(lambda t: t.sum() * 0.0 - math.inf, np.array([1.0]), steps=5)
    with pytest.raises(ValueError, match="scalar"):
        cm.bayes.hmc(lambda t: t * 2.0, np.zeros(2), steps=5)
    with pytest.raises(ValueError, match="step_size"):
        cm.bayes.langevin(gaussian_log_prob, np.zeros(2), steps=5, step_size=0.0)


# -- Langevin --------------------------------------------------------------------------------------

def test_mala_recovers_a_correlated_gaussian():
    cm.manual_seed(5)
    result = cm.bayes.langevin(gaussian_log_prob, np.zeros(2), steps=10_000, step_size=0.12, burn_in=200)
    assert result.method == "mala"
    assert 0.6 < result.acceptance_rate <= 1.0
    assert result.samples.shape == (10_000, 2)
    assert_moments(result.samples, MEAN, SIGMA, max_se=0.08)
    v, se = narrow_variance(result.samples)
    assert abs(v - 0.2) < 4 * se


def test_unadjusted_langevin_has_the_known_step_size_bias():
    """Without the Metropolis test the chain θ' = θ − τA(θ − m) + √(2τ)ξ on N(m, A⁻¹) settles at
    covariance C solving C = (I − τA)C(I − τA) + 2τI, i.e. C = Σ(I − τA/2)⁻¹: along the narrow
    direction (Aλ = 5) with τ = 0.2 the variance is 0.2/(1 − 0.5) = 0.4, twice the truth. MALA at
    the same step size removes the bias."""
    tau = 0.2
    cm.manual_seed(6)
    ula = cm.bayes.langevin(gaussian_log_prob, np.zeros(2), steps=10_000, step_size=tau, adjust=False,
                            burn_in=200)
    assert ula.method == "ula" and ula.acceptance_rate is None
    biased = SIGMA @ np.linalg.inv(np.eye(2) - tau * PRECISION / 2)
    assert_moments(ula.samples, MEAN, biased, max_se=0.08)
    v, se = narrow_variance(ula.samples)
    assert abs(v - 0.4) < 4 * se and se < 0.02

    cm.manual_seed(6)
    mala = cm.bayes.langevin(gaussian_log_prob, np.zeros(2), steps=4000, step_size=tau, burn_in=200)
    v, se = narrow_variance(mala.samples)
    assert abs(v - 0.2) < 4 * se and se < 0.03
