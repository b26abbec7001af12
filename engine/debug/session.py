"""A steppable training session: the debugger's core, shared by the headless CLI and the TUI.

The session trains one step at a time under control. Commands (run, pause, step, step-into,
learning rate, regulariser, breakpoints, stop) may come from any thread; they are queued and
applied, each exactly once, between steps by whoever drives the session with `tick()`.
Each step publishes an immutable `Snapshot` (scalars and per-layer statistics, small).
"""
from __future__ import annotations

import ast
import math
import os
import queue
import time
from collections import deque
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .. import reg as _reg
from .. import scope
from ..data import DataLoader
from ..tensor import Tensor, no_grad
from ..tracing import trace
from . import bayesprobe, curvatureprobe, probes
from .breakpoints import Breakpoints, Hit, evaluate
from .diagnostics import (Thresholds, WarningEvent, WarningMonitor, activation_conditions,
                          curvature_conditions, gradient_conditions, loss_conditions)
from .history import History
from .loader import ModelSpec, user_traceback
from .tracesummary import locate_non_finite, summarise_trace

RUNNING, PAUSED, FINISHED, STOPPED = "running", "paused", "finished", "stopped"

# What the model's own code can raise that is the model's mistake, not calcml's: every
# exception, and a sys.exit() or GeneratorExit from inside forward or loss. (KeyboardInterrupt
# is the person at the keyboard, and propagates.)
MODEL_ERRORS = (Exception, SystemExit, GeneratorExit)

# The per-parameter and per-layer series in the history, "<name>.<stat>" (in _series' order).
PARAM_SERIES = ("grad_norm", "penalty_grad_norm", "hessian_diag", "weight_norm", "update_ratio",
                "sparsity", "effective_lr")
LAYER_SERIES = ("grad_out_norm", "mean_local_derivative")


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
    thresholds: Thresholds = field(default_factory=Thresholds)


def session_config(curvature_every: int | None = None) -> SessionConfig:
    """The configuration `calcml-debug` runs with: the defaults, with curvature held to a tenth
    of the training time and the update-ratio and sparsity passes to a fiftieth, and what the
    command line asks for."""
    config = SessionConfig(curvature_budget=0.1, detail_budget=0.02)
    if curvature_every is not None:
        config.curvature_every = curvature_every
    return config


@dataclass(frozen=True)
class StopInfo:
    step: int
    reason: str     # 'breakpoint', 'non_finite', 'error', 'user', 'data_exhausted'
    detail: str

    def to_dict(self) -> dict:
        return {"step": self.step, "reason": self.reason, "detail": self.detail}


class Snapshot(NamedTuple):
    """Everything a front end shows about the latest step; small and immutable (a NamedTuple:
    built from its values in one call every step; `_replace` gives a changed copy)."""
    step: int
    epoch: int
    state: str
    loss: float
    val_loss: float | None
    penalty: float
    lr: float
    steps_per_sec: float
    regularizer: tuple            # (kind, λ): ('none', 0.0), ('L1', 0.01) ...
    layers: Sequence              # probes.LayerStats, forward order (a tuple, or StepLayers: built when read)
    warnings: tuple               # WarningEvents of this step
    holding: tuple                # diagnostics.Condition currently holding
    stop: StopInfo | None = None
    hit: Hit | None = None
    histograms: dict | None = None   # name -> (counts, edges), on the steps that compute them
    trace: object | None = None      # tracesummary.TraceSummary after a step-into
    curvature: object | None = None  # curvatureprobe.CurvatureStats, the latest measured
    optimizer_state: dict | None = None  # what the optimiser reports about its last step (Newton)
    bayes: object | None = None      # bayesprobe.BayesStats for models with Bayesian layers


class BatchSource:
    """One batch per call from any of the model file's data forms; counts finished epochs."""

    def __init__(self, data, batch_size, seed):
        self.epoch = 0
        self._full = self._function = self._iterable = self._iterator = None
        if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
            if batch_size is None or batch_size >= len(data[0]):
                self._full = data            # the whole set every step: no copy, no shuffle
                return
            data = DataLoader(data, batch_size=batch_size, shuffle=True, seed=seed)
        if callable(data) and not hasattr(data, "__iter__"):
            self._function = data            # a function returning one batch per call
        else:
            self._iterable = data
            self._one_shot = iter(data) is data   # a generator cannot start a second epoch

    def next(self):
        if self._full is not None:
            self.epoch += 1
            return self._full
        if self._function is not None:
            return _as_batch(self._function())
        if self._iterator is None:
            self._iterator = iter(self._iterable)
        try:
            return _as_batch(next(self._iterator))
        except StopIteration:
            self.epoch += 1
            if self._one_shot:
                raise
            self._iterator = iter(self._iterable)
            return _as_batch(next(self._iterator))


def _as_batch(batch):
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"each batch must be a pair (X, y), got {type(batch).__name__}")
    return tuple(b.data if isinstance(b, Tensor) else b for b in batch)


class _Env:
    """What breakpoint conditions can ask about a step."""

    def __init__(self, snapshot_values: dict, params: dict, layers: dict):
        self.values, self.params, self.layers = snapshot_values, params, layers

    def variable(self, name):
        value = self.values.get(name)
        return math.nan if value is None else value

    def function(self, name, arg):
        if arg in self.params:
            value = getattr(self.params[arg], name, None)
        else:
            layer = self.layers.get(arg)
            value = getattr(layer, name, None) if layer is not None else None
        return math.nan if value is None else value

    def explain(self, node) -> str:
        parts = []
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in self.values:
                parts.append(f"{sub.id} = {_short(self.variable(sub.id))}")
            elif isinstance(sub, ast.Call) and sub.args and isinstance(sub.args[0], ast.Constant):
                parts.append(f"{ast.unparse(sub)} = {_short(evaluate(sub, self))}")
        return ", ".join(parts)


def _short(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


class Session:
    def __init__(self, spec: ModelSpec, config: SessionConfig | None = None, max_steps: int | None = None):
        self.spec = spec
        self.config = config or SessionConfig()
        self.model = spec.model
        self.optimizer = spec.optimizer
        self.regularizer = spec.regularizer
        self.max_steps = max_steps if max_steps is not None else spec.steps
        self.state = PAUSED
        self.stop_info: StopInfo | None = None
        self.step_count = 0
        self.history = History(self.config.history_capacity)
        self.warnings: deque = deque(maxlen=self.config.warnings_capacity)
        self.monitor = WarningMonitor(self.config.thresholds)
        self.breakpoints = Breakpoints()
        self.snapshot: Snapshot | None = None
        self.last_trace = None
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._pending_steps = 0
        self._pending_traced = False
        self._batches = BatchSource(spec.data, spec.batch_size, spec.seed)
        self.layers = probes.layer_modules(self.model)
        self._params = list(self.model.named_parameters())
        self._before = {name: np.empty_like(p.data) for name, p in self._params}
        self._mask = np.empty(max((p.size for _, p in self._params), default=0), dtype=bool)
        # What _measure needs of each parameter and layer every step, worked out once:
        # (name, tensor, history series names) and (name, module, activation kind, whether it has
        # parameters, history series names); and the layout StepLayers builds statistics from.
        layer_of = {id(p): (layer_name, short) for layer_name, module in self.layers
                    for short, p in module._parameters.items() if p is not None}
        owner = [layer_of.get(id(p), (name.rpartition(".")[0] or "model", name)) for name, p in self._params]
        with_params = {layer for layer, _ in owner}
        self._param_plan = [(name, p, tuple(f"{name}.{stat}" for stat in PARAM_SERIES)) for name, p in self._params]
        self._layer_plan = [(name, module, probes.ACTIVATIONS.get(type(module)), name in with_params,
                             tuple(f"{name}.{stat}" for stat in LAYER_SERIES)) for name, module in self.layers]
        self._layout = probes.StepLayout(
            params=tuple((name, p.shape, *where) for (name, p), where in zip(self._params, owner)),
            layers=tuple((name, type(module).__name__, probes.ACTIVATIONS.get(type(module)))
                         for name, module in self.layers))
        self._recorder = probes.LayerRecorder(self.layers)   # one, cleared every step
        self._detail: dict = {}      # name -> (weight norm, update norm, update ratio, sparsity, effective lr),
                                     # a new dict at each measurement (snapshots' StepLayers keep theirs)
        self._detail_seconds = 0.0   # the last detail measurement's copy of θ took this long
        self._detail_wait = 0.0      # training seconds before the next scheduled one (detail_budget)
        n_params = sum(p.size for _, p in self._params)
        limit = self.config.curvature_max_params
        self.curvature_every = self.config.curvature_every if limit is None or n_params <= limit else 0
        self.curvature_note = None if self.curvature_every or not self.config.curvature_every else (
            f"curvature is off: {n_params:,} parameters is more than the limit of {limit:,} "
            "(each measurement takes about 30 Hessian-vector products)")
        self.curvature: curvatureprobe.CurvatureStats | None = None   # the latest measured
        self.curvature_history: deque = deque(maxlen=self.config.history_capacity)
        self._curvature_last = (None, 0.0)   # (step measured, training seconds before the next)
        self._training_seconds = 0.0     # time spent in training steps, measurements excluded
        self._untimed = 0.0
        self._needs_closure = bool(getattr(self.optimizer, "requires_closure", False))
        self._bayes_layers = bayesprobe.layers_of(self.model)
        self._sampler = hasattr(self.optimizer, "posterior_std")   # MCMC (cm.bayes.HMC): a chain, not a fit
        self.bayes: bayesprobe.BayesStats | None = None   # the latest, for models with Bayesian layers
        self.bayes_note = None
        self._elbo = None      # this step's ELBO terms
        self._first_loss = None
        self._best_loss = math.inf
        self._last_val = None
        self._rate = _Rate()
        self._owner = os.getpid()   # a model that forks: only this process goes on training

    # -- commands: safe from any thread; applied between steps ---------------------------
    def run(self) -> None:
        self._commands.put(("run",))

    def pause(self) -> None:
        self._commands.put(("pause",))

    def step(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError(f"step(n) needs n >= 1, got {n}")
        self._commands.put(("step", int(n)))

    def step_into(self) -> None:
        """One training iteration recorded op by op (the trace is in the next snapshot)."""
        self._commands.put(("step_into",))

    def set_lr(self, lr: float) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"the learning rate must be a positive number, got {lr}")
        self._commands.put(("lr", float(lr)))

    def scale_lr(self, factor: float) -> None:
        """Multiply the learning rate by `factor` when the command is applied (so two quick
        presses of a key halve it twice, whatever the last snapshot said)."""
        if not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"the learning-rate factor must be a positive number, got {factor}")
        self._commands.put(("lr_scale", float(factor)))

    def set_regularizer(self, kind: str, lam: float | None = None) -> None:
        kind = str(kind).upper() if str(kind).lower() != "none" else "none"
        if kind not in ("none", "L1", "L2"):
            raise ValueError(f"the regulariser must be none, L1 or L2, not {kind!r}")
        if lam is not None and not (lam >= 0 and math.isfinite(lam)):
            raise ValueError(f"λ must be a number >= 0, got {lam}")
        self._commands.put(("reg", kind, lam))

    def add_breakpoint(self, text: str):
        """Add a breakpoint now (a bad one raises BreakpointError with the reason)."""
        return self.breakpoints.add(text, params=[n for n, _ in self._params],
                                    layers=[n for n, _ in self.layers])

    def remove_breakpoint(self, bp_id: int) -> bool:
        return self.breakpoints.remove(bp_id)

    def stop(self, detail: str = "stopped by the user") -> None:
        self._commands.put(("stop", detail))

    # -- driving -----------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def epoch(self) -> int:
        return self._batches.epoch

    @property
    def done(self) -> bool:
        return self.state in (FINISHED, STOPPED)

    def tick(self) -> Snapshot | None:
        """Apply queued commands, then train one step if running or steps are pending."""
        self._apply_commands()
        if self.done:
            return None
        if self.state == RUNNING or self._pending_steps > 0:
            traced = self._pending_traced
            self._pending_traced = False
            if self._pending_steps > 0:
                self._pending_steps -= 1
            started, self._untimed = time.perf_counter(), 0.0
            try:
                return self._train_step(traced)
            finally:
                if os.getpid() != self._owner:
                    # The model forked inside this step and this is the copy: it must not train
                    # on, publish or write a report beside the process that started the run.
                    os._exit(0)
                self._training_seconds += time.perf_counter() - started - self._untimed
        return None

    def run_to_end(self, on_step=None) -> Snapshot | None:
        """Run until finished, stopped, or paused by a breakpoint (headless use)."""
        self.run()
        while True:
            snapshot = self.tick()
            if snapshot is not None and on_step is not None:
                on_step(snapshot)
            if self.done or (self.state == PAUSED and self._pending_steps == 0 and self._commands.empty()):
                return self.snapshot

    def _apply_commands(self) -> None:
        commands = self._commands
        while not commands.empty():   # only this thread takes commands out, so get_nowait has one
            command = commands.get_nowait()
            name = command[0]
            if name == "run" and not self.done:
                self.state = RUNNING
            elif name == "pause" and not self.done:
                self.state = PAUSED
                self._pending_steps = 0
            elif name == "step" and not self.done:
                self.state = PAUSED
                self._pending_steps += command[1]
            elif name == "step_into" and not self.done:
                self.state = PAUSED
                self._pending_steps += 1
                self._pending_traced = True
            elif name == "lr":
                for group in self.optimizer.param_groups:
                    group["lr"] = command[1]
            elif name == "lr_scale":
                for group in self.optimizer.param_groups:
                    group["lr"] = group["lr"] * command[1]
            elif name == "reg":
                self._switch_regularizer(command[1], command[2])
            elif name == "stop" and not self.done:
                self._stop("user", command[1])

    def _switch_regularizer(self, kind: str, lam) -> None:
        current = self.regularizer
        if kind == "none":
            self.regularizer = None
            return
        if lam is None:
            lam = current.lam if current is not None else 1e-3
        keep = dict(include_bias=current.include_bias, select=current.select) if current is not None else {}
        self.regularizer = (_reg.L1 if kind == "L1" else _reg.L2)(lam, **keep)

    def stop_now(self, detail: str) -> None:
        """Stop at once, from the thread that drives the session (a step cut short by a signal:
        the last finished step is where the run ends)."""
        if not self.done:
            self._stop("user", detail)
            if self.snapshot is not None:
                self.snapshot = self.snapshot._replace(state=self.state, stop=self.stop_info)

    def stop_at_breakpoint(self) -> None:
        """End a run paused by a breakpoint (headless: no one can continue it), saying which and why."""
        hit = self.snapshot.hit if self.snapshot is not None else None
        if self.state != PAUSED or hit is None:
            return
        self._stop("breakpoint", f"breakpoint {hit.breakpoint.describe()}: {hit.why}")
        self.snapshot = self.snapshot._replace(state=self.state, stop=self.stop_info)

    def _stop(self, reason: str, detail: str) -> None:
        self.state = STOPPED
        self.stop_info = StopInfo(self.step_count, reason, detail)
        self._pending_steps = 0

    # -- one training step -----------------------------------------------------------------
    def _train_step(self, traced: bool) -> Snapshot:
        spec = self.spec
        try:
            X, y = self._batches.next()
        except StopIteration:
            self._stop("data_exhausted", "the model file's data iterator has no more batches")
            return self._publish_stopped()
        except MODEL_ERRORS as error:
            self._stop("error", "the model file's data raised an error:\n" + _describe_error(error, spec.path))
            return self._publish_stopped()

        recorder = self._recorder
        recorder.clear()
        context = trace() if traced else nullcontext()
        scope.recorder = recorder
        try:
            # NaN and Inf are found and explained below; numpy's own warnings would only be noise.
            with context as recorded, np.errstate(all="ignore"):
                if self._bayes_layers:
                    bayesprobe.clear_elbo(self.model)
                loss = spec.loss(self.model(X), y)
                _check_loss(loss)
                self._elbo = bayesprobe.read_elbo(self.model) if self._bayes_layers else None
                self.optimizer.zero_grad()
                loss.backward()
        except MODEL_ERRORS as error:
            self._stop("error", f"step {self.step_count + 1}: " + _describe_error(error, spec.path))
            return self._publish_stopped()
        finally:
            scope.recorder = None
        if traced:
            self.last_trace = recorded

        loss_value = float(loss.data)
        data_grads = {name: p.grad for name, p in self._params}
        # ‖g‖ per gradient and whether every entry is finite, in one pass in the usual case (a
        # finite gradient of 1e200s is an exploding gradient, not a NaN: its norm is rescaled).
        checked = {name: probes.checked_norm(g) for name, g in data_grads.items() if g is not None}
        bad = not math.isfinite(loss_value) or not all(finite for _, finite in checked.values())
        grad_norms = {name: n for name, (n, _) in checked.items()}
        if bad:
            return self._non_finite(X, y, loss_value, recorded if traced else None)

        penalty_grads, penalty = {}, 0.0
        if self.regularizer is not None:
            try:   # a regulariser's `select` is the model file's code
                with np.errstate(all="ignore"):
                    penalty_grads = self.regularizer.grads(self.model)
                    penalty = self.regularizer.value(self.model)
            except MODEL_ERRORS as error:
                self._stop("error", f"step {self.step_count + 1}: the regulariser failed: "
                           + _describe_error(error, spec.path))
                return self._publish_stopped()
            for name, p in self._params:
                if name in penalty_grads and p.grad is not None:
                    p.grad = p.grad + penalty_grads[name]
        # Summarise the trace before the update: its arrays are references, and some (W^T, the
        # matmul factor d(x@W^T)/dx) are views of the weights that the optimiser changes in place.
        trace_summary = summarise_trace(recorded) if traced else None
        if self.curvature_every and self._curvature_is_due():
            self._measure_curvature(X, y)
        noise = None
        if self._bayes_layers and self.config.noise_every and self.step_count % self.config.noise_every == 0:
            noise = self._measure_noise(X, y)
        detail = (traced or self.step_count == 0 or self._rests_after_this_step()
                  or ((self.step_count + 1) % self.config.detail_every == 0
                      and self._training_seconds >= self._detail_wait))
        if detail:
            started = time.perf_counter()
            for name, p in self._params:
                np.copyto(self._before[name], p.data)
            self._detail_seconds = time.perf_counter() - started
        if self._needs_closure:
            try:
                with np.errstate(all="ignore"):
                    self.optimizer.step(lambda: self._closure(X, y))
            except MODEL_ERRORS as error:
                self._stop("error", f"step {self.step_count + 1}: {type(self.optimizer).__name__}.step: "
                           + _describe_error(error, spec.path))
                return self._publish_stopped()
        else:
            self.optimizer.step()
        self.step_count += 1

        layers, layer_series, may_warn = self._measure(recorder, data_grads, grad_norms, penalty_grads, detail)
        if self._bayes_layers or self._sampler:
            self._update_bayes(detail, noise)
        snapshot = self._publish(loss_value, penalty, layers, layer_series, may_warn, recorder, trace_summary,
                                 detail)
        recorder.clear()  # let go of this step's tensors
        return snapshot

    def _objective(self, X, y) -> Tensor:
        """What training minimises on this batch, as one Tensor: data loss + penalty."""
        loss = self.spec.loss(self.model(X), y)
        if self.regularizer is not None:
            loss = loss + self.regularizer.penalty(self.model)
        return loss

    def _closure(self, X, y) -> Tensor:
        """For optimisers that re-evaluate the loss themselves (Newton): PyTorch's convention."""
        self.optimizer.zero_grad()
        loss = self._objective(X, y)
        loss.backward()
        return loss

    def _curvature_is_due(self) -> bool:
        last, seconds = self._curvature_last
        return (last is None or self.step_count >= last + self.curvature_every) and self._training_seconds >= seconds

    def _measure_curvature(self, X, y) -> None:
        """λ_max, tr H and diag H at the weights this step starts from; a failure turns the
        measurement off with a note (it never stops training). The next one is due
        `curvature_every` steps later and, with a budget, not before training has taken
        1/budget times as long as this one did (so small models, whose Hessian-vector products
        cost many steps each, spend at most that fraction of their time on curvature)."""
        c = self.config
        started = time.perf_counter()
        try:
            with np.errstate(all="ignore"):
                stats = curvatureprobe.measure(lambda: self._objective(X, y), self._params, self.optimizer,
                                               self.step_count + 1, iters=c.curvature_iters,
                                               samples=c.curvature_samples, seed=self.step_count)
        except MODEL_ERRORS as error:
            self.curvature_every = 0
            self.curvature_note = f"curvature is off: measuring it failed: {type(error).__name__}: {error}"
            return
        self.curvature = stats
        self.curvature_history.append(stats)
        cost = time.perf_counter() - started
        self._untimed += cost  # not training time
        wait = cost / c.curvature_budget if c.curvature_budget else 0.0
        self._curvature_last = (self.step_count, self._training_seconds + wait)

    def _measure_noise(self, X, y):
        """Gradients from a few fresh weight draws at this step's weights (see bayesprobe)."""
        try:
            with np.errstate(all="ignore"):
                return bayesprobe.gradient_noise(lambda: self._objective(X, y), self._params,
                                                 max(2, self.config.noise_samples))
        except MODEL_ERRORS as error:
            self.bayes_note = f"gradient noise is off: measuring it failed: {type(error).__name__}: {error}"
            self.config.noise_every = 0
            return None

    def _update_bayes(self, detail: bool, noise) -> None:
        previous = self.bayes
        if detail or previous is None:
            sigma = (bayesprobe.posterior_sigma(self._bayes_layers) if self._bayes_layers
                     else bayesprobe.chain_sigma(self.optimizer, self.layers))
        else:
            sigma = previous.posterior_sigma
        terms = self._elbo or {}
        kept = dict(gradient_noise=previous.gradient_noise, mc_loss=previous.mc_loss,
                    mc_loss_se=previous.mc_loss_se, mc_samples=previous.mc_samples,
                    noise_step=previous.noise_step) if previous is not None else {}
        if noise is not None:
            by_param, mean, se = noise
            kept = dict(gradient_noise=by_param, mc_loss=mean, mc_loss_se=se,
                        mc_samples=max(2, self.config.noise_samples), noise_step=self.step_count)
        self.bayes = bayesprobe.BayesStats(step=self.step_count, elbo=terms.get("elbo"),
                                           expected_log_likelihood=terms.get("expected_log_likelihood"),
                                           kl=terms.get("kl"), posterior_sigma=sigma, **kept)

    def _rests_after_this_step(self) -> bool:
        """Whether the run will stand still after the step about to be taken (paused with no
        steps left, or at its last step): the moment to measure everything."""
        last = self.max_steps is not None and self.step_count + 1 >= self.max_steps
        return last or (self.state != RUNNING and self._pending_steps == 0)

    def _measure(self, recorder, data_grads, grad_norms, penalty_grads, detail: bool) -> tuple:
        """This step's numbers: (StepLayers, their values for the history {series name: value},
        whether any warning could hold). The weight norm, update and sparsity need passes over
        every weight, so they are measured on `detail` steps (every `detail_every` steps and
        whenever the run rests); in between, the snapshot carries the latest measurement. The
        warning check here is a quick look at the numbers; only when it finds something over a
        threshold do the statistics get built and the full checks (with their messages) run."""
        t = self.config.thresholds
        if detail:
            self._measure_detail(t.sparsity_threshold)
        curvature = self.curvature
        hessian_diag = curvature.hessian_diag if curvature is not None else probes.EMPTY
        new_curvature = curvature is not None and curvature.step == self.step_count
        detail_of = self._detail
        series: dict = {}
        param_numbers = []
        may_warn = False
        exploding_norm = t.exploding_norm
        for name, p, keys in self._param_plan:
            g = data_grads[name]
            grad_norm = grad_norms[name] if g is not None else 0.0
            total = p.grad
            if total is g and not penalty_grads:   # the usual case: the gradient used is the data loss's
                penalty_norm, total_norm = 0.0, grad_norm
            else:
                pg = penalty_grads.get(name)
                penalty_norm = probes.norm(pg) if pg is not None else 0.0
                total_norm = grad_norm if total is g else (probes.norm(total) if total is not None else 0.0)
            param_numbers.append((grad_norm, penalty_norm, total_norm))
            if grad_norm > exploding_norm:
                may_warn = True
            series[keys[0]] = grad_norm
            series[keys[1]] = penalty_norm
            if new_curvature and hessian_diag.get(name) is not None:
                series[keys[2]] = hessian_diag[name]
            if detail:
                w_norm, _, ratio, sparsity, effective = detail_of[name]
                series[keys[3]] = w_norm
                series[keys[4]] = ratio
                series[keys[5]] = sparsity
                if effective is not None:
                    series[keys[6]] = effective
        layer_numbers = []
        weighted = []     # ‖∂L/∂output‖ of the layers with parameters, for the chain-rule products
        norms: dict = {}  # id(gradient) -> its norm: a layer's input gradient is often the previous layer's output gradient
        calls, none = recorder.calls, (None, None)
        for name, module, act, has_params, keys in self._layer_plan:
            x, out = calls.get(name, none)
            grad_in = grad_out = mean_d = dead = saturated = None
            if x is not None and x.grad is not None:
                grad_in = norms.get(id(x.grad))
                if grad_in is None:
                    grad_in = norms[id(x.grad)] = probes.norm(x.grad)
            if out is not None:
                if out.grad is not None:
                    grad_out = norms.get(id(out.grad))
                    if grad_out is None:
                        grad_out = norms[id(out.grad)] = probes.norm(out.grad)
                    series[keys[0]] = grad_out
                    if has_params:
                        weighted.append(grad_out)
                if act is not None:
                    mean_d, dead, saturated = probes.activation_stats(act, module, out.data, t.saturation_level)
                    series[keys[1]] = mean_d
                    if ((dead is not None and dead >= t.dead_fraction)
                            or (saturated is not None and saturated >= t.saturated_fraction)):
                        may_warn = True
            layer_numbers.append((out.shape if out is not None else None, grad_in, grad_out, mean_d, dead, saturated))
        if not may_warn and len(weighted) > 1 and weighted[-1]:
            top = weighted[-1]   # diagnostics.chain_products, as numbers
            may_warn = any(not t.vanishing_ratio <= v / top <= t.exploding_ratio for v in weighted[:-1])
        layers = probes.StepLayers(self._layout, param_numbers, layer_numbers, detail_of, hessian_diag)
        return layers, series, may_warn

    def _measure_detail(self, sparsity_threshold: float) -> None:
        """Weight norm, update (θ now minus θ before this step, saved in `_before`), update ratio,
        sparsity and the optimiser's effective step, per parameter (each a pass over every weight)."""
        started = time.perf_counter()
        mask, measured = self._mask, {}
        for name, p in self._params:
            data = p.data
            w_norm = probes.norm(data)
            before = self._before[name]
            np.subtract(data, before, out=before)  # Δθ, in the buffer refilled before each detail step
            update = probes.norm(before)
            small = probes.count_small(data, sparsity_threshold, mask)
            measured[name] = (w_norm, update, update / w_norm if w_norm > 0 else math.nan,
                              small / max(p.size, 1), curvatureprobe.effective_lr(self.optimizer, p))
        self._detail = measured   # replaced, not updated: earlier steps' StepLayers hold the old one
        budget = self.config.detail_budget
        if budget:   # the next scheduled measurement waits until training has paid for this one
            cost = self._detail_seconds + time.perf_counter() - started
            self._detail_wait = self._training_seconds + cost / budget

    def _validation_loss(self) -> float | None:
        if self.spec.val_data is None or self.step_count % self.config.val_every:
            return None
        Xv, yv = self.spec.val_data
        self.model.eval()
        try:
            with no_grad():
                value = float(self.spec.loss(self.model(Xv), yv).data)
        except MODEL_ERRORS as error:
            self._stop("error", "computing the validation loss: " + _describe_error(error, self.spec.path))
            value = None
        finally:
            self.model.train()
        return value

    def _publish(self, loss: float, penalty: float, layers, layer_series: dict, may_warn: bool, recorder,
                 trace_summary=None, detail: bool = True) -> Snapshot:
        step = self.step_count
        if self._first_loss is None:
            self._first_loss = loss
        self._best_loss = min(self._best_loss, loss)
        val = self._validation_loss()
        if val is not None:
            self._last_val = val

        t = self.config.thresholds
        conditions = []
        if may_warn:
            built = tuple(layers)
            conditions = gradient_conditions(built, t) + activation_conditions(built, t)
        conditions += loss_conditions(loss, self._first_loss, self._best_loss, t)
        conditions += curvature_conditions(self.curvature, self.lr, t)
        events = self.monitor.update(step, conditions)
        self.warnings.extend(events)

        self.history.record(step, self._series(loss, val, penalty, layer_series, detail))
        hit = self._check_breakpoints(step, loss, layers, events)
        if self.max_steps is not None and step >= self.max_steps and not self.done:
            self.state = FINISHED
        # Histograms cost more than the rest: every few steps, and whenever the run stands still.
        histograms = None
        resting = self.done or (self.state != RUNNING and self._pending_steps == 0)
        if trace_summary is not None or resting or step % self.config.histogram_every == 0:
            histograms = self._histograms(recorder)
        snapshot = Snapshot(
            step, self.epoch, self.state, loss, self._last_val, penalty, self.lr, self._rate.tick(),
            (self.regularizer.kind, self.regularizer.lam) if self.regularizer else ("none", 0.0),
            layers, tuple(events), tuple(self.monitor.holding()), self.stop_info, hit, histograms,
            trace_summary, self.curvature, self._optimizer_state(), self.bayes)
        self.snapshot = snapshot
        return snapshot

    def _optimizer_state(self) -> dict | None:
        state = getattr(self.optimizer, "state_info", None)
        return dict(state) if state else None

    def _series(self, loss, val, penalty, layer_series: dict, detail: bool) -> dict:
        """This step's values for the history: the step's own, then `layer_series` from _measure
        (update ratio and sparsity on the steps that measured them, curvature on the steps that
        measured it)."""
        values = {"loss": loss, "lr": self.lr}
        if val is not None:
            values["val_loss"] = val
        if self.regularizer is not None:
            values["penalty"] = penalty
        curvature = self.curvature if self.curvature is not None and self.curvature.step == self.step_count else None
        if curvature is not None:
            values["curvature.lambda_max"] = curvature.lambda_max
            values["curvature.trace"] = curvature.trace
            if curvature.lr_edge is not None:
                values["curvature.lr_edge"] = curvature.lr_edge
        b = self.bayes
        if b is not None:
            for key in ("elbo", "expected_log_likelihood", "kl"):
                if getattr(b, key) is not None:
                    values[key] = getattr(b, key)
            if detail:
                for layer, sigma in b.posterior_sigma.items():
                    values[f"{layer}.posterior_sigma"] = sigma
            if b.noise_step == self.step_count:
                values["mc_loss"], values["mc_loss_se"] = b.mc_loss, b.mc_loss_se
                for name, ratio in b.gradient_noise.items():
                    values[f"{name}.gradient_noise"] = ratio
        state = getattr(self.optimizer, "state_info", None)
        if state:
            family = "hmc" if self._sampler else "newton"
            for key in ("grad_norm", "newton_decrement", "damping_used", "min_eigenvalue",
                        "acceptance_rate", "potential", "hamiltonian_error"):
                if key in state:
                    values[f"{family}.{key}"] = state[key]
        values.update(layer_series)
        return values

    def _check_breakpoints(self, step, loss, layers, events) -> Hit | None:
        if not len(self.breakpoints):
            return None
        params = {p.name: p for layer in layers for p in layer.params.values()}
        c = self.curvature
        env = _Env({"loss": loss, "val_loss": self._last_val, "step": step, "epoch": self.epoch,
                    "lr": self.lr, "lambda_max": c.lambda_max if c else None, "lr_edge": c.lr_edge if c else None},
                   params, {layer.name: layer for layer in layers})
        started = {e.kind for e in events if e.event == "start"}
        hit = self.breakpoints.check(step, env, started)
        if hit is not None:
            self.state = PAUSED
            self._pending_steps = 0
        return hit

    def initial_snapshot(self) -> Snapshot:
        """Step 0, before any training: the weights as initialised (and their histograms)."""
        layers = []
        params = {}
        for name, p in self._params:
            w = probes.norm(p.data)
            params[name] = probes.ParamStats(name, p.shape, 0.0, 0.0, 0.0, w, 0.0, 0.0, float(
                np.count_nonzero(np.abs(p.data) < self.config.thresholds.sparsity_threshold)) / max(p.size, 1))
        for layer_name, module in self.layers:
            own = {short: params[f"{layer_name}.{short}" if layer_name != "model" else short]
                   for short, p in module._parameters.items() if p is not None}
            layers.append(probes.LayerStats(layer_name, type(module).__name__, own,
                                            activation=probes.ACTIVATIONS.get(type(module))))
        snapshot = Snapshot(step=0, epoch=0, state=self.state, loss=math.nan, val_loss=None, penalty=0.0,
                            lr=self.lr, steps_per_sec=0.0,
                            regularizer=(self.regularizer.kind, self.regularizer.lam) if self.regularizer
                            else ("none", 0.0), layers=tuple(layers), warnings=(), holding=(),
                            histograms=self._histograms())
        self.snapshot = snapshot
        return snapshot

    def _histograms(self, recorder=None) -> dict:
        """Histograms of every weight and gradient ('<param>.weight_hist', '<param>.grad_hist')
        and of each activation's local derivative at this step ('<layer>.deriv_hist')."""
        bins = self.config.histogram_bins
        out = {}
        for name, p in self._params:
            out[f"{name}.weight_hist"] = probes.histogram(p.data, bins)
            if p.grad is not None:
                out[f"{name}.grad_hist"] = probes.histogram(p.grad, bins)
        if recorder is not None:
            for name, module in self.layers:
                kind = probes.ACTIVATIONS.get(type(module))
                _, output = recorder.calls.get(name, (None, None))
                if kind is not None and output is not None:
                    out[f"{name}.deriv_hist"] = probes.histogram(probes.local_derivative(kind, module, output.data), bins)
        return out

    def _non_finite(self, X, y, loss_value, recorded) -> Snapshot:
        """Find the first op that produced a NaN or Inf, warn, and stop without updating the weights."""
        if recorded is None:  # run the same step again, recorded, to find where it happened
            self.model.zero_grad()
            try:
                with trace() as recorded, np.errstate(all="ignore"):
                    loss = self.spec.loss(self.model(X), y)
                    loss.backward()
            except MODEL_ERRORS:
                pass
        self.last_trace = recorded
        where = locate_non_finite(recorded)
        step = self.step_count + 1
        message = (f"loss = {loss_value}: {where.describe()}. The update was not applied, so the "
                   f"weights are as they were before this step" if where else
                   f"loss = {loss_value}: a value became NaN or infinite; the update was not applied")
        event = WarningEvent(step, "non_finite", where.layer if where else None, where.op if where else None,
                             loss_value, math.inf, message)
        self.warnings.append(event)
        self.step_count = step
        self._stop("non_finite", message)
        self.history.record(step, {"loss": loss_value, "lr": self.lr})
        hit = self.breakpoints.check(step, _Env({}, {}, {}), {"non_finite"})
        return self._publish_stopped(events=(event,), trace_summary=summarise_trace(recorded),
                                     loss=loss_value, hit=hit if hit and hit.breakpoint.kind == "warning" else None)

    def _publish_stopped(self, events=(), trace_summary=None, loss=None, hit=None) -> Snapshot:
        """The snapshot of a step that could not finish: the last good layers, and what went wrong."""
        previous = self.snapshot
        snapshot = Snapshot(
            step=self.step_count, epoch=self.epoch, state=self.state, hit=hit,
            loss=loss if loss is not None else (previous.loss if previous else math.nan),
            val_loss=previous.val_loss if previous else None, penalty=previous.penalty if previous else 0.0,
            lr=self.lr, steps_per_sec=0.0,
            regularizer=(self.regularizer.kind, self.regularizer.lam) if self.regularizer else ("none", 0.0),
            layers=previous.layers if previous else (), warnings=tuple(events),
            holding=tuple(self.monitor.holding()), stop=self.stop_info, trace=trace_summary,
            histograms=self._histograms(), curvature=self.curvature, optimizer_state=self._optimizer_state(),
            bayes=self.bayes)
        self.snapshot = snapshot
        return snapshot


def _check_loss(loss) -> None:
    if not isinstance(loss, Tensor):
        raise TypeError(f"loss(pred, target) must return a calcml Tensor, got {type(loss).__name__}")
    if loss.data.size != 1:
        raise ValueError(f"loss(pred, target) must return a scalar, got shape {loss.shape}; "
                         "reduce it with .mean() or .sum()")
    if not loss.requires_grad:
        raise ValueError("the loss does not depend on any parameter: was it computed under cm.no_grad(), "
                         "or from .data arrays instead of tensors?")


def _describe_error(error: BaseException, path: str) -> str:
    if isinstance(error, SystemExit):   # sys.exit() inside the model is the model's doing
        frames = user_traceback(error, path).rsplit("\n", 1)[0] if error.__traceback__ else ""
        said = f"the model called exit({error.code!r}): training cannot go on after it"
        return f"{frames}\n{said}" if frames.startswith("Traceback") else said
    return user_traceback(error, path)


class _Rate:
    """Steps per second over the last second or so."""

    def __init__(self):
        self._times: deque = deque(maxlen=256)

    def tick(self) -> float:
        now = time.perf_counter()
        self._times.append(now)
        while len(self._times) > 2 and now - self._times[0] > 1.0:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])
