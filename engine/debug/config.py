"""How a session measures: schedules, budgets, limits and warning thresholds."""
from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Thresholds


@dataclass
class SessionConfig:
    history_capacity: int = 10_000       # steps of history kept per series
    warnings_capacity: int = 1_000       # warning events kept
    histogram_every: int = 100           # steps between weight/gradient histograms
    detail_every: int = 10               # steps between update-ratio and sparsity measurements
    detail_budget: float | None = None   # if set, skip a scheduled one until training has taken
                                         # 1/budget times as long as the last (calcml-debug: 0.02)
    histogram_bins: int = 30
    val_every: int = 10                  # steps between validation losses
    curvature_every: int = 100           # steps between curvature measurements (0: never)
    curvature_budget: float | None = None  # if set, also wait until training has taken 1/budget
                                           # times as long as the last measurement (calcml-debug: 0.1)
    curvature_max_params: int | None = 5000  # no curvature above this many parameters (None: no limit)
    curvature_iters: int = 20            # Lanczos steps (Hessian-vector products) for λ_max
    curvature_samples: int = 10          # Hutchinson samples for the trace and the diagonal
    noise_every: int = 50                # Bayesian layers: steps between gradient-noise measurements (0: never)
    noise_samples: int = 8               # weight draws per gradient-noise measurement
    batch_noise_every: int = 50          # steps between mini-batch noise measurements (0: never)
    batch_noise_groups: int = 16         # micro-batches the step's batch is split into (at most its examples)
    batch_noise_budget: float | None = None  # if set, also wait until training has taken 1/budget times
                                             # as long as the last measurement (calcml-debug: 0.02)
    data_view_every: int = 10            # steps between data views (the model over its inputs' plane; 0: never)
    data_view_budget: float | None = 0.05  # and not before training has taken 1/budget times as long as the last
    data_view_interval: float | None = None  # and not within this many seconds of the last (calcml-debug: 0.25,
                                             # as often as the interface redraws it)
    thresholds: Thresholds = field(default_factory=Thresholds)


def session_config(curvature_every: int | None = None) -> SessionConfig:
    """The configuration `calcml-debug` runs with: the defaults, with curvature held to a tenth
    of the training time, the update-ratio and sparsity passes and the mini-batch noise to a
    fiftieth each, the data view to four a second, and what the command line asks for."""
    config = SessionConfig(curvature_budget=0.1, detail_budget=0.02, batch_noise_budget=0.02,
                           data_view_interval=0.25)
    if curvature_every is not None:
        config.curvature_every = curvature_every
    return config
