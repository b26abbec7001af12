"""cm.bayes.HMC: the HMC transition as an optimiser, one per step(closure), on Parameters.

The target is a correlated 2-D Gaussian with known moments; tolerances come from batch means
(the chain is cut into 20 consecutive batches; the spread of the batch averages is the standard
error of the overall average, autocorrelation included), as in test_bayes_mcmc.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import calcml as cm

SIGMA = np.array([[1.0, 0.8], [0.8, 1.0]])   # eigenvalues 1.8 and 0.2
A = np.linalg.inv(SIGMA)                      # the precision: U(x) = ½ xᵀ A x
MEAN = np.zeros(2)


def batch_means(values, batches=20):
    values = np.asarray(values)
    n = len(values) // batches * batches
    means = values[:n].reshape(batches, -1, *values.shape[1:]).mean(axis=1)
    return means.mean(axis=0), means.std(axis=0, ddof=1) / math.sqrt(batches)


def gaussian_chain(step_size=0.3, leapfrog_steps=5, burn_in=100, start=(0.0, 0.0)):
    x = cm.nn.Parameter(np.array(start, dtype=float))
    opt = cm.bayes.HMC([x], step_size=step_size, leapfrog_steps=leapfrog_steps, burn_in=burn_in)

    def closure():
        opt.zero_grad()
        U = (x @ (cm.tensor(A) @ x)) * 0.5
        U.backward()
        return U

    return x, opt, closure


def run_chain(x, opt, closure, steps):
    kept = []
    for _ in range(steps):
        opt.step(closure)
        if opt.state_info["kept"] > 0:
            kept.append(x.data.copy())
    return np.array(kept)


@pytest.fixture(scope="module")
def chain():
    cm.manual_seed(10)
    x, opt, closure = gaussian_chain()
    samples = run_chain(x, opt, closure, 2100)
    return x, opt, samples


def test_recovers_the_mean_and_covariance(chain):
    x, opt, samples = chain
    assert samples.shape == (2000, 2) and opt.kept == 2000
    m, se = batch_means(samples)
    assert np.all(se < 0.07), f"the chain mixes too slowly: standard errors {se}"
    assert np.all(np.abs(m - MEAN) < 4 * se), f"mean {m} (standard errors {se})"
    c, cse = batch_means(np.einsum("ni,nj->nij", samples, samples))
    assert np.all(cse < 0.07), f"the chain mixes too slowly: standard errors {cse}"
    assert np.all(np.abs(c - SIGMA) < 4 * cse), f"covariance {c} vs {SIGMA} (standard errors {cse})"


def test_running_statistics_are_those_of_the_kept_states(chain):
    x, opt, samples = chain
    np.testing.assert_allclose(opt.posterior_mean(x), samples.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(opt.posterior_std(x), samples.std(axis=0, ddof=1), rtol=1e-10)
    assert opt.posterior_mean(x).shape == x.shape


def test_acceptance_rate_and_state_info(chain):
    x, opt, samples = chain
    info = opt.state_info
    assert 0.5 < info["acceptance_rate"] <= 1.0
    assert info["acceptance_rate"] == opt.accepted / 2100
    assert set(info) == {"step", "accepted", "acceptance_rate", "kept", "potential", "hamiltonian_error",
                         "step_size", "leapfrog_steps", "message"}
    assert info["step"] == 2100 and info["kept"] == 2000 and info["leapfrog_steps"] == 5
    assert info["step_size"] == 0.3 and isinstance(info["accepted"], bool)
    assert info["potential"] == pytest.approx(0.5 * x.data @ A @ x.data, rel=1e-12)
    assert 0 <= info["hamiltonian_error"] < 1 and isinstance(info["message"], str)
    assert "\n" not in info["message"]
    for value in info.values():
        assert isinstance(value, (bool, int, float, str))


def test_the_same_chain_as_hmc():
    """One transition per step() is exactly cm.bayes.hmc's transition: same seed, same chain."""
    cm.manual_seed(3)
    x, opt, closure = gaussian_chain(step_size=0.25, leapfrog_steps=4, burn_in=0, start=(1.0, -2.0))
    samples = run_chain(x, opt, closure, 60)
    cm.manual_seed(3)
    reference = cm.bayes.hmc(lambda t: (t @ (cm.tensor(A) @ t)) * -0.5, np.array([1.0, -2.0]), steps=60,
                             step_size=0.25, leapfrog_steps=4)
    np.testing.assert_array_equal(samples, reference.samples)
    assert opt.accepted / 60 == reference.acceptance_rate


def test_burn_in_is_not_kept():
    cm.manual_seed(4)
    x, opt, closure = gaussian_chain(burn_in=5)
    assert opt.posterior_mean(x) is None and opt.posterior_std(x) is None
    for k in range(5):
        opt.step(closure)
        assert opt.state_info["kept"] == 0 and "burn-in" in opt.state_info["message"]
    assert opt.posterior_mean(x) is None
    opt.step(closure)
    np.testing.assert_array_equal(opt.posterior_mean(x), x.data)
    assert opt.posterior_std(x) is None                     # one state: no spread yet
    opt.step(closure)
    assert opt.kept == 2 and opt.posterior_std(x).shape == (2,)
    with pytest.raises(ValueError, match="not one of the optimiser's parameters"):
        opt.posterior_mean(cm.nn.Parameter(np.zeros(2)))


def test_a_rejected_proposal_leaves_the_parameters_exactly_as_they_were():
    """ε = 1.5 > 2√0.2 makes leapfrog unstable along the narrow direction: most proposals are
    rejected, and after each the parameters are bit for bit what they were, with p.grad = ∇U there."""
    cm.manual_seed(5)
    x, opt, closure = gaussian_chain(step_size=1.5, leapfrog_steps=20, start=(0.3, -0.2))
    rejected = 0
    for _ in range(20):
        before = x.data.copy()
        data_id = id(x.data)
        returned = opt.step(closure)
        # the loss it started at
        assert returned.item() == pytest.approx(0.5 * before @ A @ before, rel=1e-12)
        assert id(x.data) == data_id                         # updated in place
        np.testing.assert_allclose(x.grad, A @ x.data, rtol=1e-12)
        if not opt.state_info["accepted"]:
            rejected += 1
            np.testing.assert_array_equal(x.data, before)
            assert opt.state_info["hamiltonian_error"] > 0
            assert "rejected" in opt.state_info["message"]
    assert rejected >= 15
    assert opt.state_info["acceptance_rate"] < 0.3
    assert np.all(np.isfinite(x.data))


def test_a_closure_that_raises_mid_trajectory_leaves_no_trace():
    x = cm.nn.Parameter(np.array([0.5, 0.5]))
    opt = cm.bayes.HMC([x], step_size=0.1, leapfrog_steps=5)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        opt.zero_grad()
        U = (x * x).sum() * 0.5
        U.backward()
        return U

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    np.testing.assert_array_equal(x.data, [0.5, 0.5])
    assert opt.steps == 0 and opt.state_info == {}


def test_step_size_is_the_groups_lr():
    """Scaling the lr (the debugger's [ and ] keys) scales ε; groups may have their own ε (a
    diagonal mass matrix), and the chain still samples the right target."""
    a, b = cm.nn.Parameter(np.zeros(1)), cm.nn.Parameter(np.zeros(1))
    opt = cm.bayes.HMC([{"params": [a]}, {"params": [b], "lr": 0.06}], step_size=0.3, leapfrog_steps=5)
    assert [g["lr"] for g in opt.param_groups] == [0.3, 0.06]
    scales = np.array([1.0, 0.2])           # independent N(0, 1) and N(0, 0.2²)

    def closure():
        opt.zero_grad()
        U = ((a / scales[0]) ** 2).sum() * 0.5 + ((b / scales[1]) ** 2).sum() * 0.5
        U.backward()
        return U

    cm.manual_seed(6)
    samples = []
    for _ in range(1500):
        opt.step(closure)
        samples.append([a.item(), b.item()])
    samples = np.array(samples[100:])
    v, se = batch_means(samples ** 2)
    assert np.all(np.abs(v - scales ** 2) < 4 * se) and np.all(se < 0.1 * scales ** 2)
    assert opt.state_info["acceptance_rate"] > 0.8
    for group in opt.param_groups:
        group["lr"] *= 0.5
    opt.step(closure)
    assert opt.state_info["step_size"] == 0.15


def test_the_closure_is_required():
    x = cm.nn.Parameter(np.zeros(2))
    opt = cm.bayes.HMC([x])
    assert cm.bayes.HMC.requires_closure is True
    assert isinstance(opt, cm.optim.Optimizer) and opt.param_groups[0]["lr"] == 0.05
    with pytest.raises(ValueError, match=r"HMC needs a closure .*−log posterior.*opt\.step\(closure\)"):
        opt.step()


def test_argument_errors():
    x = cm.nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="step size"):
        cm.bayes.HMC([x], step_size=0.0)
    with pytest.raises(ValueError, match="leapfrog_steps"):
        cm.bayes.HMC([x], leapfrog_steps=0)
    with pytest.raises(ValueError, match="burn_in"):
        cm.bayes.HMC([x], burn_in=-1)
    opt = cm.bayes.HMC([x])

    def vector_loss():
        opt.zero_grad()
        return x * 2.0

    with pytest.raises(ValueError, match="scalar"):
        opt.step(vector_loss)

    def infinite():
        opt.zero_grad()
        U = (x * x).sum() + math.inf
        U.backward()
        return U

    with pytest.raises(FloatingPointError, match="no step taken"):
        opt.step(infinite)
    np.testing.assert_array_equal(x.data, 0.0)
