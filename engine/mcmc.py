"""Markov chain Monte Carlo: sampling the posterior p(θ|D) itself, from log p(θ|D) up to a
constant and its gradient (the engine's backward). Re-exported by `calcml.bayes`.

    hmc(log_prob_fn, initial, ...)        Hamiltonian Monte Carlo, Metropolis-corrected
    langevin(log_prob_fn, initial, ...)   MALA (Metropolis-adjusted) or unadjusted Langevin
    HMC(params, step_size, ...)           the HMC transition as an optimiser: one per
                                          step(closure), on a model's parameters, with running
                                          posterior means and standard deviations

All randomness comes from the engine's generator, so `cm.manual_seed(s)` makes every chain
repeatable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import optim as _optim
from . import random as _random
from .tensor import Tensor, enable_grad
from .tensor import grad as _grad

__all__ = ["MCMCResult", "hmc", "langevin", "HMC"]


@dataclass
class MCMCResult:
    """The chain after burn-in: samples[t] is θ at step t (shape (steps, *θ.shape)), log_probs[t]
    its log p. acceptance_rate: the fraction of proposals accepted (None for unadjusted Langevin,
    which accepts everything by construction and is biased by O(step size) instead)."""

    samples: np.ndarray
    log_probs: np.ndarray
    acceptance_rate: float | None
    method: str


def _value_and_grad(log_prob_fn, theta: np.ndarray):
    """log p(θ) and ∇θ log p(θ) (numpy, float64) by one forward and one backward."""
    t = Tensor(theta.copy(), requires_grad=True)
    with enable_grad():
        lp = log_prob_fn(t)
        if not isinstance(lp, Tensor) or lp.size != 1:
            raise ValueError("log_prob_fn must return a scalar calcml Tensor (log p(θ) summed)")
        if not lp.requires_grad:  # log p does not depend on θ: a flat target
            return float(lp.data), np.zeros_like(theta)
        (g,) = _grad(lp, [t], allow_unused=True)
    return float(lp.data), np.zeros_like(theta) if g is None else np.asarray(g.data, dtype=np.float64)


def _start(log_prob_fn, initial, steps, step_size):
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    if int(steps) < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    theta = np.array(initial.data if isinstance(initial, Tensor) else initial, dtype=np.float64)
    lp, g = _value_and_grad(log_prob_fn, theta)
    if not math.isfinite(lp):
        raise ValueError(f"log p(initial) = {lp}: start the chain where the density is positive")
    return theta, lp, g


def _accept(log_ratio: float, rng) -> bool:
    """Metropolis: accept with probability min(1, exp(log_ratio)); a non-finite ratio (a diverged
    proposal) is rejected."""
    if not math.isfinite(log_ratio):
        return False
    return log_ratio >= 0 or rng.random() < math.exp(log_ratio)


def _hmc_transition(value_and_grad, theta: np.ndarray, lp: float, g: np.ndarray, step_size,
                    leapfrog_steps: int, rng) -> tuple:
    """One HMC transition from θ (log p(θ) = lp, ∇log p(θ) = g), as described in `hmc`.

    value_and_grad(θ') returns (log p(θ'), ∇log p(θ')) as (float, float64 array). step_size is
    a number, or an array of θ's shape (one ε per coordinate: leapfrog with the diagonal mass
    matrix M = diag(1/εᵢ²) and unit step, so the Metropolis test below stays exact).
    Returns (θ, log p, gradient, accepted, |ΔH|): the proposal's if accepted, else the inputs
    unchanged; |ΔH| = |H_end − H_start| of the proposal (inf for a diverged one).
    """
    r = rng.standard_normal(theta.shape)
    h_start = -lp + 0.5 * float(np.sum(r * r))
    new, new_lp, new_g = theta, lp, g
    r = r + 0.5 * step_size * new_g
    with np.errstate(all="ignore"):  # a diverging trajectory is rejected below, not reported
        for i in range(leapfrog_steps):
            new = new + step_size * r
            new_lp, new_g = value_and_grad(new)
            if not math.isfinite(new_lp):
                break
            r = r + (step_size if i < leapfrog_steps - 1 else 0.5 * step_size) * new_g
        h_end = -new_lp + 0.5 * float(np.sum(r * r))
    log_ratio = h_start - h_end
    error = abs(log_ratio) if math.isfinite(log_ratio) else math.inf
    if _accept(log_ratio, rng):
        return new, new_lp, new_g, True, error
    return theta, lp, g, False, error


def _check_leapfrog_steps(leapfrog_steps) -> int:
    L = int(leapfrog_steps)
    if L < 1:
        raise ValueError(f"leapfrog_steps must be at least 1, got {leapfrog_steps}")
    return L


def hmc(log_prob_fn, initial, steps: int, step_size: float = 0.1, leapfrog_steps: int = 10,
        burn_in: int = 0) -> MCMCResult:
    """Hamiltonian Monte Carlo on log p(θ) (known up to a constant), with unit masses.

    Each step draws a momentum r ~ N(0, I) and follows Hamilton's equations for the energy
    H(θ, r) = −log p(θ) + ½‖r‖² with `leapfrog_steps` leapfrog steps of size ε:
        r ← r + (ε/2)∇log p(θ);   θ ← θ + ε r;   r ← r + (ε/2)∇log p(θ)
    The leapfrog map is reversible and keeps volume, so accepting the end point with
    probability min(1, exp(H_start − H_end)) leaves p exactly invariant; the rate is high when
    ε is small enough to keep H nearly constant. `log_prob_fn(θ)` takes a Tensor (with
    requires_grad) of the shape of `initial` and returns a scalar Tensor; its gradient comes
    from the engine. The first `burn_in` steps are run and dropped; `steps` are kept.
    (`HMC` makes the same transitions one `step()` at a time, on a model's parameters.)
    """
    theta, lp, g = _start(log_prob_fn, initial, steps, step_size)
    rng = _random.generator()
    L = _check_leapfrog_steps(leapfrog_steps)

    def value_and_grad(th):
        return _value_and_grad(log_prob_fn, th)

    samples, log_probs, accepted = [], [], 0
    for t in range(int(burn_in) + int(steps)):
        theta, lp, g, took, _ = _hmc_transition(value_and_grad, theta, lp, g, step_size, L, rng)
        if t >= burn_in:
            accepted += took
            samples.append(theta.copy())
            log_probs.append(lp)
    return MCMCResult(np.array(samples), np.array(log_probs), accepted / int(steps), "hmc")


def langevin(log_prob_fn, initial, steps: int, step_size: float = 0.01, adjust: bool = True,
             burn_in: int = 0) -> MCMCResult:
    """Langevin dynamics on log p(θ): the proposal is a gradient step plus Gaussian noise,

        θ' = θ + τ∇log p(θ) + √(2τ)·ξ,    ξ ~ N(0, I),  τ = step_size

    a discretisation of the diffusion whose stationary law is p. Unadjusted (adjust=False,
    "ULA") every proposal is taken and the chain's law is off by O(τ). MALA (adjust=True, the
    default) removes that bias with a Metropolis test: the proposal density is
    q(θ'|θ) ∝ exp(−‖θ' − θ − τ∇log p(θ)‖²/(4τ)), and θ' is accepted with probability
    min(1, p(θ')q(θ|θ') / (p(θ)q(θ'|θ))). Arguments as for `hmc`.
    """
    theta, lp, g = _start(log_prob_fn, initial, steps, step_size)
    rng = _random.generator()
    tau = float(step_size)
    noise = math.sqrt(2.0 * tau)
    samples, log_probs, accepted = [], [], 0
    for t in range(int(burn_in) + int(steps)):
        forward_mean = theta + tau * g
        new = forward_mean + noise * rng.standard_normal(theta.shape)
        with np.errstate(all="ignore"):
            new_lp, new_g = _value_and_grad(log_prob_fn, new)
            if adjust:
                back = theta - new - tau * new_g          # θ − (θ' + τ∇log p(θ'))
                fwd = new - forward_mean
                log_ratio = (new_lp - lp) - (float(np.sum(back * back)) - float(np.sum(fwd * fwd))) / (4 * tau)
                take = _accept(log_ratio, rng)
            else:
                take = True
        if take:
            theta, lp, g = new, new_lp, new_g
            if t >= burn_in:
                accepted += 1
        if t >= burn_in:
            samples.append(theta.copy())
            log_probs.append(lp)
    rate = accepted / int(steps) if adjust else None
    return MCMCResult(np.array(samples), np.array(log_probs), rate, "mala" if adjust else "ula")


# -- HMC as an optimiser: one transition per step() -----------------------------------------------

class HMC(_optim.Optimizer):
    """Hamiltonian Monte Carlo on a model's parameters, driven like an optimiser: each
    `step(closure)` makes ONE HMC transition (the same transition as `hmc`), so a training loop,
    or the debugger, runs a Markov chain whose states are the parameters.

    The closure follows PyTorch's convention (zero_grad, forward, backward, return the loss
    Tensor) and its loss is the potential energy

        U(θ) = −log p(θ|D) + const = −Σᵢ log p(yᵢ|xᵢ,θ) − log p(θ) + const

    i.e. the summed negative log-likelihood over the WHOLE data set plus the prior's negative
    log-density. A per-example mean (the usual training loss) samples the tempered posterior
    p(θ|D)^(1/n) instead, far too wide; a minibatch loss changes the target every step and
    breaks the Metropolis test. The gradient ∇U is read from p.grad after the closure (HMC
    zeroes the gradients before each call, so a closure that forgets zero_grad still gives ∇U).
    In the debugger the closure's loss is the model file's loss, plus the regulariser's penalty
    if there is one: the loss must then be U itself, over the full data set (no batch_size).

    One step: draw r ~ N(0, I) from the engine's generator (`cm.manual_seed` repeats the chain),
    follow `leapfrog_steps` leapfrog steps (closure() once at the start and once per leapfrog
    step, with the parameters set to the trajectory's points), and accept the end point with
    probability min(1, exp(H_start − H_end)), H = U + ½‖r‖². On a reject the parameters are put
    back exactly as they were. Either way, afterwards p.grad holds ∇U at the chain's state.

    step_size ε is each group's "lr", so code that scales learning rates (the debugger's [ and ]
    keys) scales ε. Groups may differ in ε: that is HMC with a diagonal mass matrix, still exact.
    Leapfrog is stable while ε < 2/√λ_max(∇²U) (not gradient descent's 2/λ_max); past that
    the energy error grows and proposals are rejected.

    After `burn_in` steps every state the chain is in after a step is kept (a rejected step
    keeps the same state again, as MCMC must) in running per-entry statistics (Welford):
    `posterior_mean(p)`, `posterior_std(p)`. The states are correlated, so their standard
    error is larger than std/√kept.

    `state_info` (a dict of plain values, replaced every step, for the debugger): step,
    accepted (this step's proposal), acceptance_rate (over every step so far, burn-in included),
    kept, potential (U at the state after the step), hamiltonian_error (|ΔH| of this step's
    proposal: near 0 means ε could grow, ≫ 1 means it should shrink), step_size, leapfrog_steps
    and a one-line message.

        opt = cm.bayes.HMC(model.parameters(), step_size=0.05, leapfrog_steps=10, burn_in=100)
        def closure():
            opt.zero_grad()
            U = neg_log_posterior(model)       # a scalar Tensor
            U.backward()
            return U
        for _ in range(1100):
            opt.step(closure)
        mean, std = opt.posterior_mean(model.weight), opt.posterior_std(model.weight)
    """

    requires_closure = True  # step() re-evaluates the loss along the trajectory

    def __init__(self, params, step_size: float = 0.05, leapfrog_steps: int = 10, burn_in: int = 0):
        super().__init__(params, dict(lr=step_size))
        self.leapfrog_steps = _check_leapfrog_steps(leapfrog_steps)
        if int(burn_in) < 0:
            raise ValueError(f"burn_in must be >= 0, got {burn_in}")
        self.burn_in = int(burn_in)
        self.steps = 0
        self.accepted = 0
        self.kept = 0
        self.state_info: dict = {}

    def _validate(self, group):
        lr = group["lr"]
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"invalid step size (the group's lr): {lr!r} (must be > 0 and finite)")

    def _params(self) -> list:
        return [p for group in self.param_groups for p in group["params"]]

    def step(self, closure=None):
        """One HMC transition; `closure` (required) returns U = −log posterior as a scalar loss.
        Returns the closure's loss at the parameters the step started from."""
        if closure is None:
            raise ValueError("HMC needs a closure that recomputes the loss (−log posterior) and returns it: "
                             "opt.step(closure), as torch.optim.LBFGS; it is called at every leapfrog step")
        params = self._params()
        shapes = [p.shape for p in params]
        sizes = [p.size for p in params]
        cuts = np.cumsum(sizes)[:-1]
        saved = [p.data.copy() for p in params]
        eps = np.concatenate([np.full(p.size, float(group["lr"]))
                              for group in self.param_groups for p in group["params"]])
        first = []

        def write(theta):
            for p, part, shape in zip(params, np.split(theta, cuts), shapes):
                p.data[...] = part.reshape(shape)

        def value_and_grad(theta):
            """(log p, ∇log p) = (−U, −∇U) with the parameters set to θ."""
            write(theta)
            self.zero_grad()
            with enable_grad():
                loss = closure()
            value = loss.data if isinstance(loss, Tensor) else loss
            if np.size(value) != 1:
                raise ValueError(f"HMC: the closure must return a scalar loss, got shape {np.shape(value)}")
            if not first:
                first.append(loss)
            grads = [np.zeros(p.size) if p.grad is None else np.asarray(p.grad.data, dtype=np.float64).ravel()
                     for p in params]
            return -float(np.asarray(value).reshape(())), -np.concatenate(grads)

        def restore():
            for p, d in zip(params, saved):
                p.data[...] = d

        theta = np.concatenate([d.astype(np.float64).ravel() for d in saved])
        try:
            lp, g = value_and_grad(theta)
            if not math.isfinite(lp):
                raise FloatingPointError(f"HMC: the loss (−log posterior) is {-lp} at the current "
                                         "parameters; no step taken")
            new, new_lp, new_g, accepted, error = _hmc_transition(
                value_and_grad, theta, lp, g, eps, self.leapfrog_steps, _random.generator())
        except BaseException:
            restore()  # a closure that raised mid-trajectory leaves no trace on the parameters
            raise
        if accepted:
            write(new)
        else:
            restore()
        for p, part, shape in zip(params, np.split(-new_g, cuts), shapes):
            p.grad = part.reshape(shape).astype(p.data.dtype)
        self.steps += 1
        self.accepted += accepted
        if self.steps > self.burn_in:
            self.kept += 1
            for p in params:
                self._welford(p)
        self.state_info = self._info(accepted, -new_lp, error)
        return first[0]

    def _welford(self, p) -> None:
        state = self.state[p]
        x = p.data.astype(np.float64)
        if "posterior_mean" not in state:
            state["posterior_mean"] = np.zeros_like(x)
            state["posterior_m2"] = np.zeros_like(x)
        mean, m2 = state["posterior_mean"], state["posterior_m2"]
        delta = x - mean
        mean += delta / self.kept
        m2 += delta * (x - mean)

    def posterior_mean(self, p) -> np.ndarray | None:
        """The mean of p over the kept states (None before any is kept)."""
        self._group_of(p)
        state = self.state.get(p)
        return None if not state or self.kept < 1 else state["posterior_mean"].copy()

    def posterior_std(self, p) -> np.ndarray | None:
        """The standard deviation of each entry of p over the kept states, with n − 1 (None
        before two are kept)."""
        self._group_of(p)
        state = self.state.get(p)
        return None if not state or self.kept < 2 else np.sqrt(state["posterior_m2"] / (self.kept - 1))

    def _info(self, accepted: bool, potential: float, error: float) -> dict:
        rate = self.accepted / self.steps
        step_size = float(self.param_groups[0]["lr"])
        verdict = "accepted" if accepted else "rejected (parameters unchanged)"
        if self.steps <= self.burn_in:
            phase = f"burn-in {self.steps}/{self.burn_in}"
        else:
            phase = f"{self.kept} kept"
        advice = ""
        if self.steps >= 20 and rate < 0.5:
            advice = ": acceptance is low, lower the step size"
        elif self.steps >= 20 and rate > 0.98:
            advice = ": acceptance is near 1, a larger step size would explore faster"
        message = (f"{verdict}, |ΔH| = {error:.3g}; acceptance {rate:.0%} over {self.steps} steps, "
                   f"{phase}{advice}")
        return {
            "step": self.steps,
            "accepted": bool(accepted),
            "acceptance_rate": rate,
            "kept": self.kept,
            "potential": float(potential),
            "hamiltonian_error": float(error),
            "step_size": step_size,
            "leapfrog_steps": self.leapfrog_steps,
            "message": message,
        }
