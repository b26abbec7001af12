"""Bayesian training: Gaussian distributions, the ELBO, Monte Carlo estimates, HMC and Langevin.

Notation: θ = the weights, D = the data (X, y), p(θ) the prior, p(y|X,θ) the likelihood,
q(θ) an approximation to the posterior p(θ|D) ∝ p(y|X,θ)·p(θ).

Variational inference picks q from a family (here: independent Gaussians, `nn.BayesLinear`)
by maximising the evidence lower bound

    ELBO(q) = E_q[log p(y|X,θ)] − KL(q‖p)  ≤  log p(y|X)

(the gap is KL(q‖p(θ|D)), so maximising the ELBO moves q towards the posterior). The
expectation is estimated from Monte Carlo draws θ = μ + σ·ε, ε ~ N(0, 1) (the
reparameterisation trick: θ is a differentiable function of μ and σ, so the engine's backward
gives unbiased gradients of the estimate). The KL between Gaussians is exact (closed form).

    Normal(mu, sigma)                          rsample, sample, log_prob, entropy
    kl_divergence(q, p)                        KL(q‖p), elementwise
    kl_loss(model)                             Σ KL(q‖prior) over the model's BayesLinear layers
    elbo(model, log_likelihood, X, y, ...)     the ELBO and its terms; minimise its .loss
    mc_expectation(f, sampler, n)              E[f(θ)] and its standard error
    predictive(model, X, samples)              the posterior predictive mean and spread

Markov chain Monte Carlo samples the posterior itself, using only log p(θ|D) up to a constant
and its gradient (from the engine's backward); it lives in `calcml.mcmc` and is part of this
module's API:

    hmc(log_prob_fn, initial, ...)        Hamiltonian Monte Carlo, Metropolis-corrected
    langevin(log_prob_fn, initial, ...)   MALA (Metropolis-adjusted) or unadjusted Langevin
    HMC(params, step_size, ...)           the HMC transition as an optimiser: one per
                                          step(closure), on a model's parameters, with running
                                          posterior means and standard deviations

All randomness comes from the engine's generator, so `cm.manual_seed(s)` makes every draw,
and every chain, repeatable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import random as _random
from .tensor import Tensor, _lift, no_grad

__all__ = ["Normal", "kl_divergence", "kl_loss", "bayesian_layers", "ELBO", "elbo", "elbo_from_outputs",
           "MCResult", "mc_expectation", "predictive", "MCMCResult", "hmc", "langevin", "HMC"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# -- the Gaussian ---------------------------------------------------------------------------------

class Normal:
    """N(μ, σ²), elementwise: μ and σ are Tensors (or numbers / arrays) that broadcast together.

    Density  p(x) = exp(−(x − μ)²/(2σ²)) / (σ√(2π))
    log p(x) = −(x − μ)²/(2σ²) − log σ − ½ log 2π
    Entropy  H = −E[log p(x)] = ½ log(2πe σ²) = ½(1 + log 2π) + log σ

    Tensors given as μ or σ stay in the graph: `rsample`, `log_prob` and `entropy` are
    differentiable with respect to them.
    """

    def __init__(self, mu, sigma):
        like = mu if isinstance(mu, Tensor) else sigma if isinstance(sigma, Tensor) else None
        self.mu = _lift(mu, like)
        self.sigma = _lift(sigma, like)
        if np.any(self.sigma.data <= 0):  # NaN passes: it propagates, to be found where it arose
            raise ValueError(f"Normal: σ must be > 0 everywhere, got min σ = {np.min(self.sigma.data)}")
        self.batch_shape = np.broadcast_shapes(self.mu.shape, self.sigma.shape)

    @property
    def mean(self) -> Tensor:
        return self.mu

    @property
    def stddev(self) -> Tensor:
        return self.sigma

    @property
    def variance(self) -> Tensor:
        return self.sigma * self.sigma

    def _noise(self, shape) -> np.ndarray:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        eps = _random.generator().standard_normal(shape + self.batch_shape)
        return eps.astype(self.mu.dtype, copy=False)

    def rsample(self, shape=()) -> Tensor:
        """μ + σ·ε with ε ~ N(0, 1) of shape `shape` + batch shape: gradients flow to μ and σ."""
        return self.mu + self.sigma * self._noise(shape)

    def sample(self, shape=()) -> Tensor:
        """A draw outside the graph (no gradient), from the same generator as `rsample`."""
        with no_grad():
            return self.rsample(shape).detach()

    def log_prob(self, x) -> Tensor:
        """log p(x), elementwise (broadcast against the batch shape)."""
        z = (_lift(x, self.mu) - self.mu) / self.sigma
        return z * z * -0.5 - self.sigma.log() - _HALF_LOG_2PI

    def entropy(self) -> Tensor:
        """½(1 + log 2π) + log σ, elementwise over the batch shape."""
        h = self.sigma.log() + (0.5 + _HALF_LOG_2PI)
        return h if h.shape == self.batch_shape else h.broadcast_to(self.batch_shape)

    def __repr__(self) -> str:
        return f"Normal(batch_shape={self.batch_shape})"


def kl_divergence(q: Normal, p: Normal) -> Tensor:
    """KL(q‖p) = E_q[log q(θ) − log p(θ)], in closed form and elementwise (the caller sums).

    For q = N(μq, σq²), p = N(μp, σp²):
        KL = log(σp/σq) + (σq² + (μq − μp)²)/(2σp²) − ½
    It is ≥ 0, and 0 exactly when q = p.
    """
    ratio = q.sigma / p.sigma
    shift = (q.mu - p.mu) / p.sigma
    return (ratio * ratio + shift * shift - 1.0) * 0.5 + p.sigma.log() - q.sigma.log()


# -- Bayesian layers in a model -------------------------------------------------------------------

def bayesian_layers(model) -> list:
    """(dotted name, module) for every `nn.BayesLinear` in the model (the model itself included)."""
    from .nn.bayes import BayesLinear  # here, not at the top: calcml.nn imports this module
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BayesLinear)]


def kl_loss(model) -> Tensor:
    """Σ KL(q‖prior) over every BayesLinear in the model: a scalar Tensor (0 when there is none)."""
    total = None
    for _, layer in bayesian_layers(model):
        term = layer.kl()
        total = term if total is None else total + term
    return total if total is not None else _lift(0.0, None)


# -- the ELBO -------------------------------------------------------------------------------------

@dataclass
class ELBO:
    """One Monte Carlo estimate of the ELBO and its two terms (Tensors, differentiable).

    With a minibatch of b examples out of n_data, k weight draws θ₁..θ_k from q:

        expected_log_likelihood = (n_data/b) · (1/k) Σⱼ Σᵢ∈batch log p(yᵢ|xᵢ,θⱼ)
        kl                      = KL(q‖p), summed over every Bayesian weight
        elbo                    = expected_log_likelihood − kl
        loss                    = −elbo / n_data       (what to minimise)

    Scaling the batch sum by n_data/b makes the data term an unbiased estimate of the sum
    over the whole data set, so the KL is weighed against all n_data examples, not against one
    batch. Dividing by n_data in `loss` only sets the scale: it is a per-example loss, of the
    size of an ordinary mean loss (MSE, cross-entropy), so learning rates carry over.
    """

    elbo: Tensor
    expected_log_likelihood: Tensor
    kl: Tensor
    loss: Tensor
    samples: int
    batch_size: int
    n_data: int

    def values(self) -> dict:
        """The terms as plain floats (for display)."""
        return {"elbo": float(self.elbo.data), "expected_log_likelihood": float(self.expected_log_likelihood.data),
                "kl": float(self.kl.data), "loss": float(self.loss.data)}


def elbo_from_outputs(model, log_likelihood, outputs, y, n_data: int | None = None) -> ELBO:
    """The ELBO from forward passes already made: `outputs` is the model's output Tensor for
    one weight draw, or a list of them (one per draw, all on the same batch).

    `log_likelihood(output, y)` returns log p(y|output): a Tensor summed over the batch (not
    the mean), or per-example log-probabilities, which are summed here. E.g. for regression
    with known noise σₙ: `lambda out, y: cm.bayes.Normal(out, σₙ).log_prob(y)`.
    `n_data`: the size of the whole training set (default: the batch is all of it). A batch
    larger than n_data is allowed: a validation set scored with the training set's n_data gets
    a per-example loss comparable to the training loss. The result is also kept as
    `model.last_elbo`, so code that only sees the loss can show its terms.
    """
    if isinstance(outputs, Tensor):
        outputs = [outputs]
    outputs = list(outputs)
    if not outputs:
        raise ValueError("elbo: no outputs (need at least one forward pass)")
    b = int(np.shape(y.data if isinstance(y, Tensor) else y)[0])
    n = b if n_data is None else int(n_data)
    if b < 1 or n < 1:
        raise ValueError(f"elbo: need at least one example and n_data >= 1, got a batch of {b} and "
                         f"n_data={n_data}")
    total = None
    for out in outputs:
        ll = log_likelihood(out, y)
        if not isinstance(ll, Tensor):
            raise TypeError(f"log_likelihood must return a calcml Tensor, got {type(ll).__name__}")
        ll = ll.sum() if ll.size != 1 else ll.reshape(())
        total = ll if total is None else total + ll
    expected = total * (n / (b * len(outputs)))
    kl = kl_loss(model)
    value = expected - kl
    result = ELBO(value, expected, kl, value * (-1.0 / n), len(outputs), b, n)
    object.__setattr__(model, "last_elbo", result)  # not a Module attribute: changes no structure
    return result


def elbo(model, log_likelihood, X, y, samples: int = 1, n_data: int | None = None) -> ELBO:
    """Estimate the ELBO on the batch (X, y) from `samples` forward passes, each with fresh
    weight draws (so the model must be in training mode, or its layers set to sample).

    Minimise `elbo(...).loss` (= −ELBO/n_data). See `ELBO` for the minibatch convention and
    `elbo_from_outputs` for `log_likelihood` and `n_data`.
    """
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    return elbo_from_outputs(model, log_likelihood, [model(X) for _ in range(samples)], y, n_data)


# -- Monte Carlo expectations ---------------------------------------------------------------------

@dataclass
class MCResult:
    """E[f(θ)] ≈ mean = (1/n) Σ f(θⱼ); stderr = std/√n is the uncertainty of that estimate,
    std the spread of f itself over the draws (e.g. the predictive uncertainty)."""

    mean: np.ndarray
    stderr: np.ndarray
    std: np.ndarray
    n: int


def mc_expectation(f, sampler, n: int) -> MCResult:
    """E[f(θ)] from n independent draws θ = sampler(), with its standard error.

    f maps a draw to a number or an array (Tensors are read as their values); the mean and
    standard error are elementwise. Runs without building a graph.
    """
    n = int(n)
    if n < 2:
        raise ValueError(f"n must be at least 2 (for a standard error), got {n}")
    with no_grad():
        values = []
        for _ in range(n):
            v = f(sampler())
            values.append(np.asarray(v.data if isinstance(v, Tensor) else v, dtype=np.float64))
    values = np.stack(values)
    std = values.std(axis=0, ddof=1)
    return MCResult(values.mean(axis=0), std / math.sqrt(n), std, n)


def predictive(model, X, samples: int = 100) -> MCResult:
    """The posterior predictive of model(X) over `samples` weight draws: `.mean` is the
    prediction, `.std` its spread over the draws (the model's uncertainty about its weights).

    The Bayesian layers sample whatever the mode (the model is left as it was).
    """
    layers = [m for _, m in bayesian_layers(model)]
    before = [m.sample_in_eval for m in layers]
    for m in layers:
        m.sample_in_eval = True
    try:
        return mc_expectation(lambda out: out, lambda: model(X), samples)
    finally:
        for m, flag in zip(layers, before):
            m.sample_in_eval = flag


# Markov chain Monte Carlo lives in calcml.mcmc; it is part of this module's API too.
from .mcmc import HMC, MCMCResult, hmc, langevin  # noqa: E402
