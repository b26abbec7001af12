"""Bayesian layers during training: the ELBO's two terms, posterior σ, gradient noise, MC error.

For a model with `cm.nn.BayesLinear` layers trained on −ELBO (the model file's loss built with
`cm.bayes.elbo` or `cm.bayes.elbo_from_outputs`, which leave their terms on `model.last_elbo`):

  ELBO = E_q[log p(y|X,θ)] − KL(q‖prior)     read every step from the loss the step computed
  posterior σ per layer                        the mean of σ = softplus(ρ) over its weights: how
                                               uncertain the layer still is (with an MCMC
                                               sampler, cm.bayes.HMC: the spread of the chain)
  gradient noise per parameter                 the loss is a Monte Carlo estimate (one weight draw
                                               per step), so its gradient is random. Every
                                               `noise_every` steps, `noise_samples` extra draws at
                                               the same weights and batch give gradients g₁..g_m;
                                               noise = ‖std_j gⱼ‖ / ‖mean_j gⱼ‖ (above 1: a single
                                               draw's gradient is mostly noise)
  MC estimate of the loss                      from the same draws: their mean and its standard
                                               error std/√m, the error bar of a one-draw estimate
                                               averaged m times
"""
from __future__ import annotations

import math

import numpy as np

from ..bayes import bayesian_layers
from ..tensor import enable_grad
from ..tensor import grad as _grad
from .snapshot import BayesStats  # noqa: F401  (the record this module's numbers go into)


def layers_of(model) -> list:
    """(layer name, module) of each Bayesian layer, named as the session names its layers (a model
    that is itself one Bayesian layer is 'model', as in the layer table and the history)."""
    return [(name or "model", module) for name, module in bayesian_layers(model)]


def clear_elbo(model) -> None:
    object.__setattr__(model, "last_elbo", None)


def read_elbo(model) -> dict | None:
    """The ELBO terms the loss just computed (None when the loss was not built as an ELBO)."""
    result = getattr(model, "last_elbo", None)
    return result.values() if result is not None else None


def posterior_sigma(layers: list) -> dict:
    return {name: float(np.mean(layer.weight_sigma)) for name, layer in layers}


def chain_sigma(sampler, layers: list) -> dict:
    """For MCMC: each layer's posterior σ from the chain so far (the mean over its parameters'
    entries of the kept samples' standard deviation); layers without enough samples are left out."""
    out = {}
    for name, module in layers:
        stds = [sampler.posterior_std(p) for p in module._parameters.values() if p is not None]
        stds = [np.asarray(s) for s in stds if s is not None]
        if stds:
            out[name] = float(np.mean(np.concatenate([s.reshape(-1) for s in stds])))
    return out


def gradient_noise(objective, named_params: list, samples: int) -> tuple:
    """({parameter: noise ratio}, mean loss, its standard error) from `samples` fresh draws of
    `objective()` at the current weights; the parameters' .grad are left untouched."""
    params = [p for _, p in named_params]
    grads, losses = [], []
    with enable_grad():
        for _ in range(samples):
            loss = objective()
            losses.append(float(loss.data))
            grads.append([None if g is None else g.data for g in _grad(loss, params, allow_unused=True)])
    noise = {}
    for k, (name, _) in enumerate(named_params):
        draws = [g[k] for g in grads if g[k] is not None]
        if len(draws) < 2:
            continue
        stack = np.stack(draws)
        mean_norm = float(np.linalg.norm(stack.mean(axis=0)))
        spread = float(np.linalg.norm(stack.std(axis=0, ddof=1)))
        noise[name] = spread / mean_norm if mean_norm > 0 else math.inf
    losses = np.array(losses)
    se = float(losses.std(ddof=1) / math.sqrt(len(losses))) if len(losses) > 1 else math.nan
    return noise, float(losses.mean()), se
