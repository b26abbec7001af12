"""What a step publishes: the `Snapshot` (small and immutable) and the records in it: per-layer
and per-parameter statistics, curvature, Bayesian terms, mini-batch noise, and why a run stopped.

Each record is a frozen msgspec Struct, and its declaration is the one schema it has: the wire
encodes and validates it from this (`wire.py`), the report writes it from this (`report.py`)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple, Optional, Union

from msgspec import Struct, field

from .codec import Count, Counts, Edges, Int
from .diagnostics import Condition, WarningEvent
from .tracesummary import TraceSummary

RUNNING, PAUSED, FINISHED, STOPPED = "running", "paused", "finished", "stopped"

EMPTY = MappingProxyType({})   # a read-only empty mapping: a layer without parameters, no Hessian diagonal


class ParamStats(Struct, frozen=True):
    """One parameter's numbers at one step (immutable; built from its values in one call)."""
    name: str                  # full dotted name, e.g. 'layers.0.weight'
    shape: tuple[Count, ...]
    grad_norm: float           # ‖∂(data loss)/∂θ‖
    penalty_grad_norm: float   # ‖∂(penalty)/∂θ‖ (0 without a regulariser)
    total_grad_norm: float     # ‖the gradient the optimiser used‖
    weight_norm: float
    update_norm: float
    update_ratio: float        # ‖Δθ‖ / ‖θ‖
    sparsity: float            # fraction of |θ| < threshold
    effective_lr: Optional[float] = None   # adaptive optimisers: median per-entry step η/(√v̂+ε)
    hessian_diag: Optional[float] = None   # mean of the Hessian's diagonal Hᵢᵢ over the entries (estimate)


class LayerStats(Struct, frozen=True):
    """One layer's numbers at one step (immutable, like ParamStats)."""
    name: str
    type: str
    params: dict[str, ParamStats] = EMPTY        # short name ('weight') -> ParamStats
    output_shape: Optional[tuple[Count, ...]] = None
    grad_in_norm: Optional[float] = None         # ‖∂L/∂input‖: what this layer passes back
    grad_out_norm: Optional[float] = None        # ‖∂L/∂output‖: what reaches it from the loss side
    activation: Optional[str] = None
    mean_local_derivative: Optional[float] = None
    dead_fraction: Optional[float] = None
    saturated_fraction: Optional[float] = None
    kept_fraction: Optional[float] = None        # Dropout: the share of entries its mask kept this step
    grad_in_total_norm: Optional[float] = None   # a fork (its input also goes elsewhere: a shortcut):
                                                 # ‖∂L/∂input‖ over every path, grad_in_norm its own share

    @property
    def grad_ratio(self) -> float | None:
        """‖∂L/∂input‖ / ‖∂L/∂output‖: this layer's factor in the chain-rule product."""
        if self.grad_in_norm is None or not self.grad_out_norm:
            return None
        return self.grad_in_norm / self.grad_out_norm

    @property
    def other_paths_ratio(self) -> float | None:
        """A fork's ‖∂L/∂input‖ over every path / through this layer: the other paths' join."""
        if self.grad_in_total_norm is None or not self.grad_in_norm:
            return None
        return self.grad_in_total_norm / self.grad_in_norm


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
                LayerStats(name, type_name, by_layer.get(name, EMPTY), shape, grad_in, grad_out, act, *act_stats,
                           grad_in_total_norm=whole)
                for (name, type_name, act), (shape, grad_in, grad_out, whole), act_stats
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


class StopInfo(Struct, frozen=True):
    step: Int
    reason: str     # 'breakpoint', 'non_finite', 'error', 'user', 'data_exhausted'
    detail: str


class HitInfo(Struct, frozen=True):
    """The breakpoint that paused the run, and why it held."""
    id: Int
    kind: str       # 'warning', 'step', 'every', 'condition'
    text: str       # the breakpoint as typed (normalised)
    step: Int
    why: str


class BayesStats(Struct, frozen=True):
    step: Int
    elbo: Optional[float] = None                      # this step's estimate (None: the loss is not an ELBO)
    expected_log_likelihood: Optional[float] = None
    kl: Optional[float] = None
    posterior_sigma: dict[str, Optional[float]] = field(default_factory=dict)   # layer -> mean posterior σ
    gradient_noise: dict[str, Optional[float]] = field(default_factory=dict)    # param -> ‖std g‖ / ‖mean g‖
    mc_loss: Optional[float] = None                   # the loss averaged over the extra draws
    mc_loss_se: Optional[float] = None                # its standard error
    mc_samples: Count = 0
    noise_step: Optional[Int] = None                  # when the last three were measured


class BatchNoiseStats(Struct, frozen=True):
    """Mini-batch gradient noise of one step (batchnoise.py): noise/signal ν = ‖the standard error
    of the batch's mean gradient‖ / ‖that gradient‖, of the data loss, at the step's weights."""
    step: Int                          # the step measured
    noise_signal: Optional[float]      # ν over every parameter (None: no gradient to compare)
    batch_size: Count                  # the step's batch: B examples
    groups: Count                      # micro-batches measured (0: the batch is the whole data set)
    group_size: Count = 0              # examples in each (1: per-example gradients)
    population: Optional[Count] = None  # examples in the data set, when known (the correction 1 − B/N)
    by_param: dict[str, Optional[float]] = field(default_factory=dict)   # parameter -> its ν
    note: Optional[str] = None         # why it is no longer measured, when it is not


class CurvatureStats(Struct, frozen=True):
    step: Int                  # the step whose starting point was measured
    lambda_max: float          # largest eigenvalue of H
    trace: float               # tr H (Hutchinson estimate)
    trace_se: float            # its standard error
    lr_edge: Optional[float]   # the stability edge for this optimiser's lr (None: no single edge)
    edge_formula: str          # how the edge was computed, e.g. '2/λ_max', or why there is none
    hessian_diag: dict[str, float] = field(default_factory=dict)   # parameter -> mean of Hᵢᵢ over its entries
    n_params: Count = 0


class DataView(Struct, frozen=True, kw_only=True):
    """The training points and what the model makes of their plane or line, at one step
    (dataview.py). 'classes': two features, a grid of `rows` × `columns` cells row by row from
    the top (the largest second feature), each with the class predicted there and its
    probability. 'surface': the same grid, each cell with the model's output (a numeric
    target). 'curve': one feature, the model's output at `columns` evenly spaced inputs across
    `x_range`. 'none': no picture, and `note` says why."""
    step: Int
    kind: str                  # 'classes', 'surface', 'curve' or 'none'
    note: str                  # how the output was read, or why there is no view
    x_range: tuple[float, float] = (0.0, 0.0)   # the first feature's span
    y_range: tuple[float, float] = (0.0, 0.0)   # the second feature's, or the targets' ('curve')
    columns: Count = 0
    rows: Count = 0
    classes: Count = 0
    class_names: tuple[str, ...] = ()           # each class's label value, e.g. ('0', '1')
    predicted: tuple[Count, ...] = ()           # per cell: the class predicted there
    confidence: tuple[float, ...] = ()          # per cell: that class's probability
    values: tuple[float, ...] = ()              # the model's output: per cell ('surface'), along x ('curve')
    points: tuple[tuple[float, float], ...] = ()   # the training points shown: (x, second feature or target)
    labels: tuple[Count, ...] = ()              # 'classes': each point's class
    targets: tuple[float, ...] = ()             # 'surface': each point's target
    accuracy: Optional[float] = None            # 'classes': the fraction of the points shown classed right
    fit: Optional[float] = None                 # 'curve', 'surface': the mean squared error on the points shown


class Snapshot(Struct, frozen=True, kw_only=True):
    """Everything a front end shows about the latest step; small and immutable, built by keyword
    (`msgspec.structs.replace` gives a changed copy). This declaration is also its wire schema."""
    step: Int
    epoch: Int
    state: str
    loss: float
    val_loss: Optional[float]
    penalty: float
    lr: float
    steps_per_sec: float
    regularizer: tuple[str, Optional[float]]   # (kind, λ): ('none', 0.0), ('L1', 0.01) ...
    layers: tuple[LayerStats, ...]   # forward order (a tuple, or StepLayers: built when read)
    warnings: tuple[WarningEvent, ...]          # this step's
    holding: tuple[Condition, ...]              # the conditions holding now
    stop: Optional[StopInfo] = None
    hit: Optional[HitInfo] = None
    histograms: Optional[dict[str, tuple[Counts, Edges]]] = None   # name -> (counts, edges), when computed
    trace: Optional[TraceSummary] = None        # after a step-into
    curvature: Optional[CurvatureStats] = None  # the latest measured
    optimizer_state: Optional[dict[str, Union[bool, int, float, str, None]]] = None  # the optimiser's own report (Newton)
    bayes: Optional[BayesStats] = None          # models with Bayesian layers
    batch_noise: Optional[BatchNoiseStats] = None   # mini-batch gradient noise, the latest measured
    data_view: Optional[DataView] = None        # when measured (the front end keeps the latest)
