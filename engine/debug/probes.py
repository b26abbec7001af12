"""Per-layer measurements of one training step: a few vectorised numpy reductions per array.

What is measured, per parameter: the data-loss gradient norm, the penalty's gradient norm and
that of their sum, the weight norm, the update norm and update/weight ratio, and sparsity (the
fraction of |θ| below a threshold). Per activation layer: its mean local derivative (the factor
it contributes to the chain-rule product), the dead fraction (ReLU units zero for the whole
batch) and the saturated fraction (sigmoid/tanh units whose derivative stays below 1% of its
maximum for the whole batch). Per layer: the gradient norm flowing out of it back towards the
input (‖∂L/∂input‖) and into it from the loss side (‖∂L/∂output‖), and their ratio.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from .. import nn

EMPTY = MappingProxyType({})   # a read-only empty mapping: a layer without parameters, no Hessian diagonal

ACTIVATIONS = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}
MAX_DERIVATIVE = {"relu": 1.0, "leaky_relu": 1.0, "sigmoid": 0.25, "tanh": 1.0}


def sq_norm(a: np.ndarray) -> float:
    """Σa², one BLAS dot product. ravel('K') is a view of any contiguous array, transposed ones
    included (norms do not care about the order); only a strided one is copied."""
    flat = a.ravel("K")
    return float(np.dot(flat, flat))


def norm(a) -> float:
    return math.sqrt(sq_norm(a)) if a is not None else math.nan


def count_small(a: np.ndarray, threshold: float, mask: np.ndarray) -> int:
    """How many entries have |a| < threshold, counted as (a < t) − (a ≤ −t): two comparisons into
    `mask` (a bool buffer of at least a.size, reused), where |a| < t would write a whole float
    array first. These are passes over every weight, so each one saved counts."""
    if not threshold > 0:   # then no |a| is below it (and a ≤ −t would not lie inside a < t)
        return 0
    m = mask[:a.size].reshape(a.shape)
    return int(np.count_nonzero(np.less(a, threshold, out=m))
               - np.count_nonzero(np.less_equal(a, -threshold, out=m)))


def local_derivative(kind: str, module, output: np.ndarray) -> np.ndarray:
    """The activation's derivative at this step, from its output (no second forward pass)."""
    if kind == "sigmoid":
        return output * (1.0 - output)
    if kind == "tanh":
        return 1.0 - output * output
    if kind == "relu":
        return (output > 0).astype(output.dtype)
    slope = module.negative_slope  # leaky_relu
    return np.where(output > 0, 1.0, slope)


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
    __slots__ = ("_layout", "_params", "_layers", "_detail", "_hessian", "_built")

    def __init__(self, layout: StepLayout, params: list, layers: list, detail: Mapping, hessian: Mapping):
        self._layout, self._params, self._layers = layout, params, layers   # numbers, layout order:
        self._detail, self._hessian = detail, hessian   # (grad, penalty grad, total grad norm) per param;
        self._built = None                              # (shape, in, out, mean d, dead, saturated) per layer

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
                for (name, type_name, act), (shape, grad_in, grad_out, *act_stats)
                in zip(self._layout.layers, self._layers))
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


def _num(value):
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def layer_modules(model: nn.Module) -> list:
    """(name, module) for each layer: modules owning parameters directly, and leaf modules."""
    layers = []
    for name, module in model.named_modules():
        if module._parameters or not module._modules:
            if module is model and model._modules and not module._parameters:
                continue
            layers.append((name or "model", module))
    return layers


class LayerRecorder:
    """Installed as `calcml.scope.recorder` during the forward pass: keeps each layer's input and
    output tensors (references) and asks the engine to keep their gradients."""

    def __init__(self, layers: list):
        self.names = {id(module): name for name, module in layers}
        self.calls: dict = {}

    def __call__(self, module, args, output) -> None:
        name = self.names.get(id(module))
        if name is None or not hasattr(output, "retain_grad"):
            return
        x = args[0] if args and hasattr(args[0], "retain_grad") else None
        output.retain_grad()
        if x is not None and x.requires_grad:
            x.retain_grad()
        self.calls[name] = (x, output)

    def clear(self) -> None:
        self.calls = {}


def activation_stats(kind: str, module, output: np.ndarray, saturation_level: float) -> tuple:
    """(mean local derivative, dead fraction, saturated fraction) of one activation layer."""
    if output.size == 0:
        return float("nan"), None, None
    units = output.reshape(-1, output.shape[-1]) if output.ndim > 1 else output.reshape(-1, 1)
    if kind == "relu":  # the derivative is 1 where the output is above 0 (it is never below)
        on = np.count_nonzero(units)
        alive = np.count_nonzero(units.max(axis=0))   # units above 0 for some example
        return on / units.size, 1.0 - alive / units.shape[1], None
    d = local_derivative(kind, module, units)
    mean = float(np.add.reduce(d, axis=None)) / d.size
    saturated = None
    if kind in ("sigmoid", "tanh"):
        limit = saturation_level * MAX_DERIVATIVE[kind]
        saturated = float(np.mean(np.logical_and.reduce(d < limit, axis=0)))
    return mean, None, saturated
