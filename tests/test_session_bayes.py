"""Bayesian layers in the debugger: the ELBO's terms, posterior σ per layer, gradient noise and
the Monte Carlo estimate with its standard error, in snapshots, history, report and wire."""
from __future__ import annotations

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml.debug import Session, SessionConfig
from calcml.debug.report import build_report
from helpers import make_spec, snapshot_over_the_wire

NOISE = 0.1


def bayes_spec(steps=40, elbo_loss=True, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (48, 1))
    y = np.sin(x) + NOISE * rng.standard_normal(x.shape)
    cm.manual_seed(seed)
    model = cm.nn.Sequential(cm.nn.BayesLinear(1, 8), cm.nn.Tanh(), cm.nn.BayesLinear(8, 1))

    def loss(pred, target):
        if not elbo_loss:
            return F.mse_loss(pred, target)
        return cm.bayes.elbo_from_outputs(model, lambda o, t: cm.bayes.Normal(o, NOISE).log_prob(t),
                                          pred, target, n_data=len(x)).loss

    return make_spec(model, loss, (x, y), optimizer=cm.optim.Adam(model.parameters(), lr=0.02), seed=seed,
                     steps=steps, name="bayes")


def softplus(r):
    return np.log1p(np.exp(-np.abs(r))) + np.maximum(r, 0)


def test_elbo_terms_every_step_and_consistent_with_the_loss():
    s = Session(bayes_spec())
    s.run_to_end()
    h = {k: s.history.series(k) for k in ("loss", "elbo", "expected_log_likelihood", "kl")}
    assert len(h["elbo"]) == 40 and np.all(np.isfinite(h["elbo"]))
    np.testing.assert_allclose(h["elbo"], h["expected_log_likelihood"] - h["kl"], rtol=1e-12)
    np.testing.assert_allclose(h["loss"], -h["elbo"] / 48, rtol=1e-12)   # loss = −ELBO / n_data
    assert np.all(h["kl"] > 0)
    assert h["elbo"][-1] > h["elbo"][0]                                    # training raises the ELBO


def test_posterior_sigma_per_layer_is_the_mean_softplus_of_rho():
    s = Session(bayes_spec())
    final = s.run_to_end()
    layers = dict(cm.bayes.bayesian_layers(s.model))
    assert set(final.bayes.posterior_sigma) == {"0", "2"}
    for name, layer in layers.items():
        expected = float(np.mean(softplus(layer.weight_rho.data)))
        assert final.bayes.posterior_sigma[name] == pytest.approx(expected, rel=1e-12)


def test_gradient_noise_and_the_mc_standard_error_shrinking_like_one_over_root_n():
    ses = []
    for m in (8, 128):
        s = Session(bayes_spec(steps=1), SessionConfig(noise_every=1, noise_samples=m))
        final = s.run_to_end()
        b = final.bayes
        assert b.noise_step == 1 and b.mc_samples == m
        assert set(b.gradient_noise) == {n for n, _ in s.model.named_parameters()}
        assert all(v > 0 for v in b.gradient_noise.values())
        # the MC mean of the loss is near the step's own one-draw loss, within a few of its errors
        spread = b.mc_loss_se * np.sqrt(m)
        assert abs(b.mc_loss - final.loss) < 4 * spread
        ses.append(b.mc_loss_se)
    assert 2.0 < ses[0] / ses[1] < 8.0          # √(128/8) = 4


def test_the_update_uses_the_steps_own_gradient_not_the_extra_draws():
    spec = bayes_spec(steps=1)
    spec.optimizer = cm.optim.SGD(spec.model.parameters(), lr=0.01)
    before = {n: p.data.copy() for n, p in spec.model.named_parameters()}
    s = Session(spec, SessionConfig(noise_every=1, noise_samples=4))
    final = s.run_to_end()
    assert final.bayes.noise_step == 1
    for layer in final.layers:
        for p in layer.params.values():
            moved = np.linalg.norm(dict(spec.model.named_parameters())[p.name].data - before[p.name])
            assert moved / 0.01 == pytest.approx(p.grad_norm, rel=1e-9)


def test_no_elbo_when_the_loss_is_not_one():
    s = Session(bayes_spec(steps=5, elbo_loss=False))
    final = s.run_to_end()
    assert final.bayes.elbo is None and final.bayes.posterior_sigma
    report = build_report(s)
    assert report["elbo"] == [None] * 5


def test_models_without_bayesian_layers_have_none():
    rng = np.random.default_rng(0)
    model = cm.nn.Linear(2, 1)
    spec = make_spec(model, F.mse_loss, (rng.standard_normal((8, 2)), rng.standard_normal((8, 1))), lr=0.1, steps=3,
                     path="<t>", name="t")
    s = Session(spec)
    s.run_to_end()
    report = build_report(s)
    assert s.snapshot.bayes is None and report["elbo"] is None and report["posterior_sigma"] is None


def test_report_and_wire():
    s = Session(bayes_spec(steps=12), SessionConfig(noise_every=10))
    s.run_to_end()
    report = build_report(s)
    assert len(report["elbo"]) == len(report["loss"]) == 12
    assert len(report["expected_log_likelihood"]) == len(report["kl"]) == 12
    assert set(report["posterior_sigma"]) == {"0", "2"}
    assert report["bayes"]["noise_step"] == 11 and report["bayes"]["mc_loss_se"] > 0
    back = snapshot_over_the_wire(s.snapshot)
    assert back.bayes == s.snapshot.bayes


def test_an_mcmc_sampler_reports_its_acceptance_and_the_chains_spread():
    from pathlib import Path
    from calcml.debug import load_model_file
    path = Path(__file__).resolve().parents[1] / "sample_models" / "hmc_logreg.py"
    s = Session(load_model_file(str(path), steps=150))
    final = s.run_to_end()
    opt = s.optimizer
    rate = s.history.series("hmc.acceptance_rate")
    assert rate[-1] == final.optimizer_state["acceptance_rate"] == opt.accepted / opt.steps
    stds = np.concatenate([np.ravel(opt.posterior_std(p)) for p in s.model.parameters()])
    assert final.bayes.posterior_sigma == {"model": pytest.approx(float(np.mean(stds)), rel=1e-12)}
    assert final.bayes.elbo is None and final.bayes.gradient_noise == {}
    assert "samples rather than descends" in final.curvature.edge_formula
