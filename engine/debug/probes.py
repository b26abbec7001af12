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
    included (norms do not care about the order); only a strided one is copied.

    Never raises and never warns: a sum past the largest float is inf (Σa² of 1e200 entries is
    not representable), NaN anywhere gives NaN. Integer arrays are summed as floats (a dot
    product of integers would wrap around), and so are float32/float16 ones whose sum overflows
    their own type (1e20 squared is past float32's range, not float64's)."""
    flat = a.ravel("K")
    if flat.dtype.kind != "f":
        flat = flat.astype(np.float64)
    total = float(np.vdot(flat, flat))   # np.dot's BLAS product, without its overflow warning (and
    if not math.isfinite(total) and flat.dtype.itemsize < 8:   # without np.errstate's cost per call)
        wide = flat.astype(np.float64)
        total = float(np.vdot(wide, wide))
    return total


# Below this Σa² may have lost precision to underflow (denormal squares, or squares flushed to 0).
_TINY_SQ = 1e-290


def norm(a) -> float:
    """‖a‖ (NaN for a missing array). Finite for every finite array whose norm is representable:
    when Σa² overflows (entries of 1e200) or underflows (entries of 1e-170, denormals), the
    entries are divided by the largest |aᵢ| first, so the norm of 1e200s is about 1e200·√n and
    that of denormals is not 0. Only a NaN entry gives NaN and only an infinite one inf (or a
    norm past the largest float, e.g. √2·1.7e308). Never raises or warns."""
    if a is None:
        return math.nan
    return checked_norm(a)[0]


def checked_norm(a: np.ndarray) -> tuple:
    """(‖a‖, whether every entry of `a` is finite), from the same dot product in the usual case.

    For a gradient, Σg² being finite proves every entry finite, but Σg² = inf does not prove one
    is infinite: a finite gradient of 1e200 has Σg² = inf. Only then is the array itself checked
    (one more pass), and its norm computed with scaling (see `norm`)."""
    total = sq_norm(a)
    if _TINY_SQ <= total < math.inf:   # the usual case: one dot product
        return math.sqrt(total), True
    flat = a.ravel("K")
    if flat.size == 0:
        return 0.0, True
    if flat.dtype.kind != "f":
        flat = flat.astype(np.float64)
    if math.isnan(total):               # NaN entries (or an inf and a NaN): no norm
        return math.nan, False
    with np.errstate(all="ignore"):
        largest = max(-float(flat.min()), float(flat.max()))   # max |aᵢ|, without an |a| copy
        if largest == math.inf:
            return math.inf, False
        if math.isnan(largest):
            return math.nan, False
        if largest == 0.0:
            return 0.0, True
        scaled = np.divide(flat, largest, dtype=np.float64)
        return largest * math.sqrt(float(np.vdot(scaled, scaled))), True   # Python floats: inf past the top


_WIDE_SHRINK = 0.5          # a range wider than the largest float is binned in halves
_NARROW_GROW = 2.0 ** 600   # one too narrow to divide by (denormal ends) is binned scaled up (exact)
_FLOAT_MAX = float(np.finfo(np.float64).max)


def histogram(values, bins: int) -> tuple:
    """numpy.histogram(values, bins) over the finite values, in about a third of its work, and for
    any values at all: (counts, int64 of length bins; edges, float64 of length bins + 1).

    The bin of x is ⌊(x − min)·bins/(max − min)⌋ (the last bin closed), numpy's own formula; numpy
    then re-checks each value against the rounded edges, which moves only a value lying exactly
    on an edge (possible with integer-valued data) into the bin to its right, and costs most of
    its time. These histograms are for display, so that check is left out.

    Never raises: NaN and ±inf are left out (the counts add up to the number of finite values;
    with none, the counts are 0 over −1..1, as for an empty array). One value x everywhere gets
    numpy's range x ± ½, or x ± |x|·2⁻²⁰ where ½ is lost to rounding (x = 1e308) and clipped to the
    largest float. A range wider than the largest float (−1e308..1e308) is binned in halves, its
    edges lo·(1 − t) + hi·t; one too narrow to divide by (5e-324..1e-323) is binned scaled up by
    2⁶⁰⁰ (exact). The edges are always finite and non-decreasing (they repeat only where floats
    run out, between denormals). Integer and boolean arrays are binned as float64; float32 ones
    are measured in float64."""
    bins = max(int(bins), 1)
    flat = np.asarray(values).reshape(-1)
    if flat.dtype.kind != "f":
        flat = flat.astype(np.float64)
    if flat.size == 0:
        return _no_histogram(bins)
    lo, hi = flat.min(), flat.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):   # NaN or Inf somewhere: count the rest
        flat = flat[np.isfinite(flat)]
        if flat.size == 0:
            return _no_histogram(bins)
        lo, hi = flat.min(), flat.max()
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        return _one_value(lo, flat.size, bins)
    width = hi - lo                 # Python floats: inf or a denormal at worst, never an exception
    scale = bins / width
    if math.isfinite(width) and math.isfinite(scale):   # every ordinary range: as numpy does it
        position = np.subtract(flat, lo, dtype=np.float64)   # (float32 values measured in float64)
        position *= scale
        edges = np.linspace(lo, hi, bins + 1)
    else:
        factor = _WIDE_SHRINK if not math.isfinite(width) else _NARROW_GROW
        position = np.multiply(flat, factor, dtype=np.float64)
        low, high = lo * factor, hi * factor
        position -= low
        position *= bins / (high - low)
        np.clip(position, 0, bins, out=position)
        edges = _edges(lo, hi, bins, factor)
    counts = np.bincount(position.astype(np.intp), minlength=bins + 1)
    counts[bins - 1] += counts[bins]   # the maximum itself lands at `bins`: the last bin is closed
    return counts[:bins].astype(np.int64, copy=False), edges


def _no_histogram(bins: int) -> tuple:
    return np.zeros(bins, dtype=np.int64), np.linspace(-1.0, 1.0, bins + 1)


def _edges(lo: float, hi: float, bins: int, factor: float) -> np.ndarray:
    """bins + 1 finite, non-decreasing edges from lo to hi where the range is too wide for
    numpy.linspace (its step would be inf: lo·(1 − t) + hi·t never overflows, lo < 0 < hi here) or
    too narrow to divide by (numpy.linspace, numpy's own edges, manages: it rounds to denormals)."""
    with np.errstate(all="ignore"):
        if factor < 1:
            t = np.arange(bins + 1) / bins
            edges = lo * (1 - t) + hi * t
        else:
            edges = np.linspace(lo, hi, bins + 1)
    edges[0], edges[-1] = lo, hi
    np.clip(edges, lo, hi, out=edges)
    return np.maximum.accumulate(edges)


def _one_value(x: float, n: int, bins: int) -> tuple:
    """n copies of x: numpy's histogram (range x ± ½) where it can make the bins, else x ± |x|·2⁻²⁰."""
    edges = np.linspace(x - 0.5, x + 0.5, bins + 1)
    if np.all(edges[1:] > edges[:-1]):   # what numpy checks before refusing ('too many bins')
        counts, edges = np.histogram(np.array([x]), bins=bins)
        return counts.astype(np.int64, copy=False) * n, edges.astype(np.float64, copy=False)
    half = max(abs(x) * 2.0 ** -20, 1.0)
    low, high = max(x - half, -_FLOAT_MAX), min(x + half, _FLOAT_MAX)   # x − half may be −inf
    counts, edges = histogram(np.array([low, x, high]), bins)
    counts[0] -= 1
    counts[-1] -= 1
    return counts * n, edges


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
    """The activation's derivative at this step, from its output (no second forward pass).
    Quiet on any output: NaN stays NaN, and an output no activation could give (1e308 from a
    sigmoid) gives ±inf rather than a warning."""
    with np.errstate(all="ignore"):
        return _derivative(kind, module, output)


def _derivative(kind: str, module, output: np.ndarray) -> np.ndarray:
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
    with np.errstate(all="ignore"):   # one context for it all (each costs a microsecond, every step):
        d = _derivative(kind, module, units)   # a NaN output gives a NaN mean, no warning
        mean = float(np.add.reduce(d, axis=None)) / d.size
        if not math.isfinite(mean) and np.isfinite(d).all():   # finite derivatives whose sum overflowed
            mean = float(np.add.reduce(d / d.size, axis=None))
        saturated = None
        if kind in ("sigmoid", "tanh"):
            limit = saturation_level * MAX_DERIVATIVE[kind]
            saturated = float(np.mean(np.logical_and.reduce(d < limit, axis=0)))
    return mean, None, saturated
