"""Bayesian terms (see bayesprobe): the ELBO and its two terms every step, each layer's posterior
σ on the steps that measure the weights, and every `noise_every` steps the gradient noise and
the Monte Carlo error of the loss from `noise_samples` extra weight draws (off with a note if
measuring it fails). For models with Bayesian layers, or an MCMC sampler's chain.
"""
from __future__ import annotations

from ..backend import ModelError
from ..snapshot import BayesStats
from ..schedule import Schedule
from .base import Quantity


class Bayes(Quantity):
    name = "Bayesian terms"
    layer_series = ("posterior_sigma",)
    param_series = ("gradient_noise",)
    series = ("elbo", "expected_log_likelihood", "kl", "mc_loss", "mc_loss_se")

    def start(self, session) -> None:
        backend = session.backend
        self.config = session.config
        self.active = bool(backend.bayes_layers) or backend.sampler
        self._noisy = bool(backend.bayes_layers)
        self.schedule = Schedule(self.config.noise_every, offset=1)
        self.latest: BayesStats | None = None
        self.note = None
        self._noise = None

    def before_update(self, ctx) -> None:
        self._noise = None
        if not (self._noisy and self.config.noise_every and self.schedule.due(ctx.step, ctx.clock)):
            return
        try:
            self._noise = ctx.backend.gradient_noise(ctx.record, ctx.regularizer, max(2, self.config.noise_samples))
        except ModelError as failure:
            error = failure.error
            self.note = f"gradient noise is off: measuring it failed: {type(error).__name__}: {error}"
            self.config.noise_every = 0
            self.schedule.off()

    def measure(self, ctx) -> None:
        if not self.active:
            return
        previous = self.latest
        if ctx.detailed or previous is None:
            sigma = ctx.backend.posterior_sigma()
        else:
            sigma = previous.posterior_sigma
        terms = ctx.record.terms or {}
        kept = dict(gradient_noise=previous.gradient_noise, mc_loss=previous.mc_loss,
                    mc_loss_se=previous.mc_loss_se, mc_samples=previous.mc_samples,
                    noise_step=previous.noise_step) if previous is not None else {}
        if self._noise is not None:
            by_param, mean, se = self._noise
            kept = dict(gradient_noise=by_param, mc_loss=mean, mc_loss_se=se,
                        mc_samples=max(2, self.config.noise_samples), noise_step=ctx.step)
        b = self.latest = BayesStats(step=ctx.step, elbo=terms.get("elbo"),
                                     expected_log_likelihood=terms.get("expected_log_likelihood"),
                                     kl=terms.get("kl"), posterior_sigma=sigma, **kept)
        series = ctx.series
        for key in ("elbo", "expected_log_likelihood", "kl"):
            if getattr(b, key) is not None:
                series[key] = getattr(b, key)
        if ctx.detailed:
            for layer, value in b.posterior_sigma.items():
                series[f"{layer}.posterior_sigma"] = value
        if b.noise_step == ctx.step:
            series["mc_loss"], series["mc_loss_se"] = b.mc_loss, b.mc_loss_se
            for name, ratio in b.gradient_noise.items():
                series[f"{name}.gradient_noise"] = ratio
