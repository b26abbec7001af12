"""BayesLinear: a Linear layer whose weights are Gaussian random variables (mean-field VI).

Each weight wᵢⱼ has its own posterior q(wᵢⱼ) = N(μᵢⱼ, σᵢⱼ²), independent of the others
("mean field"), and the prior is p(wᵢⱼ) = N(0, prior_sigma²). The layer learns μ and ρ, with

    σ = softplus(ρ) = log(1 + e^ρ)

so that σ stays positive whatever the optimiser does to ρ. Forward, in training mode, draws
w = μ + σ·ε (ε ~ N(0, 1), fresh every call, from the engine's generator) and computes
y = x wᵀ + b with the same op as Linear; the draw is differentiable in μ and ρ, so the gradient
of a Monte Carlo ELBO (`calcml.bayes.elbo`) trains them. In eval mode it uses the posterior mean
μ (unless `sample_in_eval` is set). The draws are taken weight first, then bias.
"""
from __future__ import annotations

import math

import numpy as np

from ..bayes import Normal, kl_divergence
from ..composites import softplus
from ..ops import LINEAR
from ..scope import describe_module
from ..tensor import _apply, _lift
from . import init
from .module import Module, Parameter

DEFAULT_INIT_SIGMA = 0.05


def inverse_softplus(sigma: float) -> float:
    """ρ with softplus(ρ) = σ: ρ = log(e^σ − 1)."""
    return math.log(math.expm1(sigma))


class BayesLinear(Module):
    """y = x wᵀ + b with w ~ N(weight_mu, softplus(weight_rho)²) elementwise (and b likewise).

    Initialisation: weight_mu and bias_mu as Linear initialises weight and bias (the same draws
    from the same seed), so a new BayesLinear starts as a Linear plus a little noise;
    ρ = inverse_softplus(init_sigma) everywhere, σ = init_sigma = 0.05 by default: small next to
    the means (about 1/√in_features), so early training is not drowned in noise, and the ELBO's
    KL term, which pulls σ towards prior_sigma, grows it where the data allow.

    sample_in_eval=True makes eval mode sample too (e.g. for predictive uncertainty).
    """

    def __init__(self, in_features: int, out_features: int, prior_sigma: float = 1.0, bias: bool = True,
                 init_sigma: float = DEFAULT_INIT_SIGMA, sample_in_eval: bool = False, dtype=np.float64):
        super().__init__()
        if not prior_sigma > 0:
            raise ValueError(f"prior_sigma must be > 0, got {prior_sigma}")
        if not init_sigma > 0:
            raise ValueError(f"init_sigma must be > 0, got {init_sigma}")
        self.in_features = in_features
        self.out_features = out_features
        self.prior_sigma = float(prior_sigma)
        self.sample_in_eval = bool(sample_in_eval)
        rho = inverse_softplus(init_sigma)
        self.weight_mu = Parameter(np.empty((out_features, in_features), dtype=dtype))
        init.kaiming_uniform_(self.weight_mu, a=math.sqrt(5))
        self.weight_rho = Parameter(np.full((out_features, in_features), rho, dtype=dtype))
        if bias:
            bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
            self.bias_mu = Parameter(np.empty(out_features, dtype=dtype))
            init.uniform_(self.bias_mu, -bound, bound)
            self.bias_rho = Parameter(np.full(out_features, rho, dtype=dtype))
        else:
            self.bias_mu = None
            self.bias_rho = None

    # -- the posterior and the prior -----------------------------------------------------------
    @property
    def sampling(self) -> bool:
        """Whether forward draws weights (training mode, or sample_in_eval) or uses the means."""
        return self.training or self.sample_in_eval

    def weight_posterior(self) -> Normal:
        return Normal(self.weight_mu, softplus(self.weight_rho))

    def bias_posterior(self) -> Normal | None:
        return None if self.bias_mu is None else Normal(self.bias_mu, softplus(self.bias_rho))

    def prior(self) -> Normal:
        return Normal(np.zeros((), dtype=self.weight_mu.dtype), np.asarray(self.prior_sigma, self.weight_mu.dtype))

    @property
    def weight_sigma(self) -> np.ndarray:
        """The posterior standard deviations σ = softplus(ρ) of the weights (numpy)."""
        return np.logaddexp(0.0, self.weight_rho.data)

    @property
    def bias_sigma(self) -> np.ndarray | None:
        return None if self.bias_rho is None else np.logaddexp(0.0, self.bias_rho.data)

    def kl(self):
        """KL(q‖prior) summed over every weight and bias: a scalar Tensor (closed form)."""
        prior = self.prior()
        total = kl_divergence(self.weight_posterior(), prior).sum()
        if self.bias_mu is not None:
            total = total + kl_divergence(self.bias_posterior(), prior).sum()
        return total

    # -- running ---------------------------------------------------------------------------------
    def forward(self, x):
        x = _lift(x, self.weight_mu)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{describe_module(self)}: matmul {x.shape} @ {(self.in_features, self.out_features)}: "
                f"this layer takes inputs with {self.in_features} features in the last dimension, "
                f"got {x.shape[-1] if x.ndim else 'a scalar'}"
            )
        if self.sampling:
            weight = self.weight_posterior().rsample()
            bias = None if self.bias_mu is None else self.bias_posterior().rsample()
        else:
            weight, bias = self.weight_mu, self.bias_mu
        if bias is None:
            return x @ weight.T
        return _apply(LINEAR, x, weight, bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias_mu is not None}, prior_sigma={self.prior_sigma}")
