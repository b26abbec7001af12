"""What a step publishes: the `Snapshot` (small and immutable) and the records in it: per-layer
and per-parameter statistics, curvature, Bayesian terms, and why a run stopped."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from dataclasses import dataclass, field
from typing import NamedTuple

from .breakpoints import Hit
from .nonfinite import json_number as _num

RUNNING, PAUSED, FINISHED, STOPPED = "running", "paused", "finished", "stopped"

EMPTY = MappingProxyType({})   # a read-only empty mapping: a layer without parameters, no Hessian diagonal


class ParamStats(NamedTuple):
    """One parameter's numbers at one step. A NamedTuple: immutable, and built from its values in
    a fraction of a frozen dataclass's time (the session builds one per parameter every step)."""
    name: str                  # full dotted name, e.g. 'layers.0.weight'
    shape: tuple
    grad_norm: float           # ‖∂(data loss)/∂θ‖
    penalty_grad_norm: float   # ‖∂(penalty)/∂θ‖ (0 without a regulariser)
    total_grad_norm: float     # ‖the gradient the optimiser used‖
    weight_norm: float
    update_norm: float
    update_ratio: float        # ‖Δθ‖ / ‖θ‖
    sparsity: float            # fraction of |θ| < threshold
    effective_lr: float | None = None   # adaptive optimisers: median per-entry step η/(√v̂+ε)
    hessian_diag: float | None = None   # mean of the Hessian's diagonal Hᵢᵢ over the entries (estimate)

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "grad_norm": _num(self.grad_norm),
                "penalty_grad_norm": _num(self.penalty_grad_norm),
                "total_grad_norm": _num(self.total_grad_norm), "weight_norm": _num(self.weight_norm),
                "update_norm": _num(self.update_norm), "update_ratio": _num(self.update_ratio),
                "sparsity": _num(self.sparsity), "effective_lr": _num(self.effective_lr),
                "hessian_diag": _num(self.hessian_diag)}


class LayerStats(NamedTuple):
    """One layer's numbers at one step (immutable, like ParamStats)."""
    name: str
    type: str
    params: Mapping = EMPTY                      # short name ('weight') -> ParamStats
    output_shape: tuple | None = None
    grad_in_norm: float | None = None            # ‖∂L/∂input‖: what this layer passes back
    grad_out_norm: float | None = None           # ‖∂L/∂output‖: what reaches it from the loss side
    activation: str | None = None
    mean_local_derivative: float | None = None
    dead_fraction: float | None = None
    saturated_fraction: float | None = None

    @property
    def grad_ratio(self) -> float | None:
        """‖∂L/∂input‖ / ‖∂L/∂output‖: this layer's factor in the chain-rule product."""
        if self.grad_in_norm is None or not self.grad_out_norm:
            return None
        return self.grad_in_norm / self.grad_out_norm

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type,
                "params": {k: v.to_dict() for k, v in self.params.items()},
                "output_shape": list(self.output_shape) if self.output_shape else None,
                "grad_in_norm": _num(self.grad_in_norm), "grad_out_norm": _num(self.grad_out_norm),
                "grad_ratio": _num(self.grad_ratio), "activation": self.activation,
                "mean_local_derivative": _num(self.mean_local_derivative),
                "dead_fraction": _num(self.dead_fraction), "saturated_fraction": _num(self.saturated_fraction)}


UNMEASURED = (float("nan"),) * 4 + (None,)   # weight norm, update, ratio, sparsity, effective lr
class StepLayout(NamedTuple):
    """What stays the same from step to step: (name, shape, layer name, short name) per parameter
    and (name, type name, activation kind) per layer, in the order StepLayers' numbers come in."""
    params: tuple
    layers: tuple


class StepLayers(Sequence):
    """One step's LayerStats (each with its ParamStats), built the first time they are read.

    The session measures a step's numbers every step, but its statistics objects are read only
    now and then (a published snapshot, a breakpoint condition, a warning that fires), so it
    keeps the numbers and builds the objects on demand. Everything it holds is immutable or never
    changed after the step (the session replaces its detail measurements rather than updating
    them), so the objects come out the same whenever they are built."""
    __slots__ = ("_layout", "_params", "_layers", "_acts", "_detail", "_hessian", "_built")

    def __init__(self, layout: StepLayout, params: list, layers: list, detail: Mapping, hessian: Mapping,
                 acts: list):
        self._layout, self._params, self._layers = layout, params, layers   # numbers, layout order:
        self._acts, self._detail, self._hessian = acts, detail, hessian     # (grad, penalty grad, total
        self._built = None         # grad norm) per param; (shape, in, out) and (mean d, dead, saturated) per layer

    def _build(self) -> tuple:
        built = self._built
        if built is None:
            detail, hessian = self._detail, self._hessian
            by_layer: dict = {}
            for (name, shape, layer, short), numbers in zip(self._layout.params, self._params):
                by_layer.setdefault(layer, {})[short] = ParamStats(
                    name, shape, *numbers, *detail.get(name, UNMEASURED), hessian.get(name))
            built = self._built = tuple(
                LayerStats(name, type_name, by_layer.get(name, EMPTY), shape, grad_in, grad_out, act, *act_stats)
                for (name, type_name, act), (shape, grad_in, grad_out), act_stats
                in zip(self._layout.layers, self._layers, self._acts))
        return built

    def __getitem__(self, index):
        return self._build()[index]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self):
        return iter(self._build())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"StepLayers{self._build()!r}"


@dataclass(frozen=True)
class StopInfo:
    step: int
    reason: str     # 'breakpoint', 'non_finite', 'error', 'user', 'data_exhausted'
    detail: str

    def to_dict(self) -> dict:
        return {"step": self.step, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class BayesStats:
    step: int
    elbo: float | None = None                      # this step's estimate (None: the loss is not an ELBO)
    expected_log_likelihood: float | None = None
    kl: float | None = None
    posterior_sigma: dict = field(default_factory=dict)   # layer -> mean posterior σ of its weights
    gradient_noise: dict = field(default_factory=dict)    # parameter -> ‖std of g‖ / ‖mean of g‖
    mc_loss: float | None = None                   # the loss averaged over the extra draws
    mc_loss_se: float | None = None                # its standard error
    mc_samples: int = 0
    noise_step: int | None = None                  # when the last three were measured

    def to_dict(self) -> dict:
        return {"step": self.step, "elbo": _num(self.elbo),
                "expected_log_likelihood": _num(self.expected_log_likelihood), "kl": _num(self.kl),
                "posterior_sigma": {k: _num(v) for k, v in self.posterior_sigma.items()},
                "gradient_noise": {k: _num(v) for k, v in self.gradient_noise.items()},
                "mc_loss": _num(self.mc_loss), "mc_loss_se": _num(self.mc_loss_se),
                "mc_samples": self.mc_samples, "noise_step": self.noise_step}


@dataclass(frozen=True)
class CurvatureStats:
    step: int                  # the step whose starting point was measured
    lambda_max: float          # largest eigenvalue of H
    trace: float               # tr H (Hutchinson estimate)
    trace_se: float            # its standard error
    lr_edge: float | None      # the stability edge for this optimiser's lr (None: no single edge)
    edge_formula: str          # how the edge was computed, e.g. '2/λ_max', or why there is none
    hessian_diag: dict = field(default_factory=dict)   # parameter name -> mean of Hᵢᵢ over its entries
    n_params: int = 0

    def to_dict(self) -> dict:
        return {"step": self.step, "lambda_max": _num(self.lambda_max), "trace": _num(self.trace),
                "trace_se": _num(self.trace_se), "lr_edge": _num(self.lr_edge),
                "edge_formula": self.edge_formula,
                "hessian_diag": {k: _num(v) for k, v in self.hessian_diag.items()},
                "n_params": self.n_params}


class Snapshot(NamedTuple):
    """Everything a front end shows about the latest step; small and immutable (a NamedTuple:
    built in one call every step; `_replace` gives a changed copy). Build it by keyword."""
    step: int
    epoch: int
    state: str
    loss: float
    val_loss: float | None
    penalty: float
    lr: float
    steps_per_sec: float
    regularizer: tuple            # (kind, λ): ('none', 0.0), ('L1', 0.01) ...
    layers: Sequence              # LayerStats, forward order (a tuple, or StepLayers: built when read)
    warnings: tuple               # WarningEvents of this step
    holding: tuple                # diagnostics.Condition currently holding
    stop: StopInfo | None = None
    hit: Hit | None = None
    histograms: dict | None = None   # name -> (counts, edges), on the steps that compute them
    trace: object | None = None      # tracesummary.TraceSummary after a step-into
    curvature: object | None = None  # curvatureprobe.CurvatureStats, the latest measured
    optimizer_state: dict | None = None  # what the optimiser reports about its last step (Newton)
    bayes: object | None = None      # bayesprobe.BayesStats for models with Bayesian layers
