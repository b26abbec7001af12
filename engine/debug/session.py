"""A steppable training session: the debugger's state machine and command queue.

Commands (commands.py: run, pause, step, step-into, learning rate, regulariser, stop) may come
from any thread; they are queued and applied, each exactly once, at a step boundary. A step
happens in one of two ways (backend.py): *driven*, by whoever calls `tick()`, or *observed*,
from the user's own training loop through `observe_step` and `observed_update_done` (a pause is
then a wait inside the latter, on the loop's own thread). Either way the step's record goes
through the same quantities (quantities/), and publishes an immutable `Snapshot`.
"""
from __future__ import annotations

import inspect
import math
import os
import queue
from collections import deque

import numpy as np
from msgspec.structs import replace

from .. import reg as _reg
from . import commands, probes
from . import snapshot as records
from .backend import MODEL_ERRORS, ModelError
from .batches import BatchSource
from .breakpoint_env import Env as _Env
from .breakpoints import Breakpoints, Hit
from .calcml_backend import CalcmlBackend, as_batch
from .config import SessionConfig, session_config
from .context import StepContext
from .diagnostics import WarningEvent, WarningMonitor
from .history import History
from .loader import ModelSpec, user_traceback
from .quantities import (ActivationHealth, BatchNoise, Bayes, ChainRule, Curvature, DataViews, GradientNorms, Histograms,
                         Loss, OptimizerState, UpdateRatio, make_all)
from .quantities.base import Quantity
from .rate import Rate
from .schedule import TrainingClock
from .snapshot import FINISHED, PAUSED, RUNNING, STOPPED, Snapshot, StopInfo

__all__ = ["Session", "SessionConfig", "session_config", "Snapshot", "StopInfo", "MODEL_ERRORS",
           "RUNNING", "PAUSED", "FINISHED", "STOPPED"]


class Session:
    def __init__(self, spec: ModelSpec, config: SessionConfig | None = None, max_steps: int | None = None,
                 backend=None):
        self.spec = spec
        self.config = config or SessionConfig()
        self.backend = backend if backend is not None else backend_for(spec)
        self.model, self.optimizer = spec.model, spec.optimizer
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
        self._hit: Hit | None = None       # the breakpoint hit the latest snapshot records
        self.last_trace = None
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._pending_steps = 0
        self._pending_traced = False
        self._observed: StepContext | None = None
        # A front end is attached that can pause the run at any moment (not only where a step
        # count or the end says it will stop): each step keeps what measuring it at rest needs.
        self.may_pause = False
        self._unsettled: StepContext | None = None   # the latest step, if it was not measured at rest
        self._chosen: dict = {}   # what a person set by command ("lr", "regularizer"): a restart keeps it
        self._scheduler_due: float | None = None   # the loss of an update the scheduler has not yet followed
        self._batches = BatchSource(spec.data, spec.batch_size, spec.seed, getattr(self.backend, "as_batch", as_batch))
        self.params = self.backend.parameters()
        self._lay_out()
        self.quantities = make_all()
        for quantity in self.quantities:
            quantity.start(self)
        by_type = {type(q): q for q in self.quantities}
        self._loss, self._curvature, self._bayes = by_type[Loss], by_type[Curvature], by_type[Bayes]
        self._optimizer_state, self._histograms = by_type[OptimizerState], by_type[Histograms]
        self._update_ratio, self._data_view = by_type[UpdateRatio], by_type[DataViews]
        self._batch_noise = by_type[BatchNoise]
        self._before = [q for q in self.quantities if type(q).before_update is not Quantity.before_update]
        self._checks = [by_type[kind] for kind in (GradientNorms, ChainRule, ActivationHealth, Loss, Curvature,
                                                          BatchNoise)]
        self.clock = TrainingClock()
        self._rate = Rate()
        self._owner = os.getpid()   # a model that forks: only this process goes on training

    def _lay_out(self) -> None:
        self.layer_info = self.backend.layers()
        self.layers = [(layer.name, layer.module) for layer in self.layer_info]
        self._layout = records.StepLayout(
            params=tuple((p.name, p.shape, p.layer, p.short) for p in self.params),
            layers=tuple((layer.name, layer.type, layer.activation) for layer in self.layer_info))

    def _follow_layers(self) -> None:
        """The backend found more layers in the step it just took (a PyTorch model's activations
        applied as functions): the quantities that keep a plan of the layers make theirs again."""
        self._lay_out()
        for quantity in self.quantities:
            if quantity.reads_layers:
                quantity.start(self)

    # -- what the quantities know, for front ends and reports --------------------------------
    @property
    def curvature_every(self) -> int:
        """Steps between curvature measurements (0: off); setting it reschedules them."""
        return self._curvature.every

    @curvature_every.setter
    def curvature_every(self, every: int) -> None:
        self._curvature.schedule.every = int(every)

    @property
    def curvature_note(self) -> str | None:
        return self._curvature.note

    @property
    def curvature(self):
        return self._curvature.latest

    def curvature_due_next(self) -> bool:
        """Whether the step under way (not yet observed) is due a curvature measurement."""
        return not self.done and self._curvature.schedule.due(self.step_count + 1, self.clock)

    @property
    def curvature_history(self) -> deque:
        return self._curvature.history

    @property
    def bayes(self):
        return self._bayes.latest

    @property
    def bayes_note(self) -> str | None:
        return self._bayes.note

    @property
    def batch_noise(self):
        """The latest mini-batch noise measurement (BatchNoiseStats; its note says why it is off)."""
        return self._batch_noise.latest

    # -- commands: safe from any thread; applied between steps ---------------------------
    def submit(self, command: commands.Command, detail: str | None = None) -> None:
        """Queue a command (ValueError, with the reason, if an argument is out of range)."""
        command.check()
        self._commands.put((command, detail))

    def run(self) -> None:
        self.submit(commands.Run())

    def pause(self) -> None:
        self.submit(commands.Pause())

    def step(self, n: int = 1) -> None:
        self.submit(commands.Step(int(n)))

    def train_on(self, n: int) -> None:
        """A finished run: train `n` more steps."""
        self.submit(commands.TrainOn(int(n)))

    def step_into(self) -> None:
        """One training iteration recorded op by op (the trace is in the next snapshot)."""
        self.submit(commands.StepInto())

    def set_lr(self, lr: float) -> None:
        self.submit(commands.SetLr(float(lr)))

    def scale_lr(self, factor: float) -> None:
        self.submit(commands.ScaleLr(float(factor)))

    def set_regularizer(self, kind: str, lam: float | None = None) -> None:
        self.submit(commands.SetRegularizer(str(kind), lam))

    def add_breakpoint(self, text: str):
        """Add a breakpoint now (a bad one raises BreakpointError with the reason)."""
        return self.breakpoints.add(text, params=[p.name for p in self.params],
                                    layers=[layer.name for layer in self.layer_info])

    def remove_breakpoint(self, bp_id: int) -> bool:
        return self.breakpoints.remove(bp_id)

    def stop(self, detail: str = "stopped by the user") -> None:
        self.submit(commands.Stop(), detail)

    # -- driving -----------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return self.backend.lr

    @property
    def epoch(self) -> int:
        return self._batches.epoch

    @property
    def done(self) -> bool:
        return self.state in (FINISHED, STOPPED)

    def tick(self) -> Snapshot | None:
        """Apply queued commands, then train one step if running or steps are pending."""
        self.apply_commands()
        if self.done or (self.state != RUNNING and self._pending_steps == 0):
            self._settle()
        if self.done:
            return None
        if self.state == RUNNING or self._pending_steps > 0:
            traced = self._pending_traced
            self._pending_traced = False
            if self._pending_steps > 0:
                self._pending_steps -= 1
            self.clock.start_step()
            try:
                return self._train_step(traced)
            finally:
                if os.getpid() != self._owner:
                    # The model forked inside this step and this is the copy: it must not train
                    # on, publish or write a report beside the process that started the run.
                    os._exit(0)
                self.clock.end_step()
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

    def apply_commands(self) -> None:
        """Apply the queued commands now (a step boundary: tick() does this first)."""
        commands_ = self._commands
        while not commands_.empty():   # only this thread takes commands out, so get_nowait has one
            self._apply(*commands_.get_nowait())

    def _apply(self, command, detail) -> None:
        kind = type(command)
        if kind is commands.SetLr:
            self.backend.set_lr(command.value)
            self._chosen["lr"] = True
        elif kind is commands.ScaleLr:
            self.backend.set_lr(self.backend.lr * command.factor)
            self._chosen["lr"] = True
        elif kind is commands.SetRegularizer:
            self._switch_regularizer(command.kind_name(), command.lam)
            self._chosen["regularizer"] = True
        elif kind is commands.TrainOn:
            if self.state == FINISHED:   # (a stopped run stays stopped: what stopped it still holds)
                self.max_steps = self.step_count + command.n
                self.state = RUNNING
        elif self.done:
            return
        elif kind is commands.Run:
            self.state = RUNNING
        elif kind is commands.Pause:
            self.state = PAUSED
            self._pending_steps = 0
        elif kind is commands.Step:
            self.state = PAUSED
            self._pending_steps += command.n
        elif kind is commands.StepInto:
            self.state = PAUSED
            self._pending_steps += 1
            self._pending_traced = True
        elif kind is commands.Stop:
            self._stop("user", detail or "stopped by the user")

    def keep_settings_of(self, old: "Session") -> str:
        """A restart: what a person chose in the `old` run of the same model file (its
        breakpoints; the lr and the regulariser, where set by command) holds here from step 0.
        Says what was kept, in words."""
        refused = self.breakpoints.adopt(old.breakpoints, params=[p.name for p in self.params],
                                         layers=[layer.name for layer in self.layer_info])
        n = len(self.breakpoints)
        kept = [f"{n} breakpoint{'s' * (n != 1)}"]
        if refused:
            kept.append("not " + ", ".join(repr(text) for text in refused) + " (the model no longer has those names)")
        if old._chosen.get("lr"):
            self.backend.set_lr(old.lr)
            self._chosen["lr"] = True
            kept.append(f"lr {old.lr:.4g}")
        if old._chosen.get("regularizer"):
            self.regularizer = old.regularizer
            self._chosen["regularizer"] = True
            kept.append("no regulariser" if old.regularizer is None
                        else f"{old.regularizer.kind} λ={old.regularizer.lam:g}")
        return ", ".join(kept)

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
                self.snapshot = replace(self.snapshot, state=self.state, stop=self.stop_info)

    def stop_at_breakpoint(self) -> None:
        """End a run paused by a breakpoint (headless: no one can continue it), saying which and why."""
        hit = self._hit
        if self.state != PAUSED or hit is None or self.snapshot is None or self.snapshot.hit is None:
            return
        self._stop("breakpoint", f"breakpoint {hit.breakpoint.describe()}: {hit.why}")
        self.snapshot = replace(self.snapshot, state=self.state, stop=self.stop_info)

    def _stop(self, reason: str, detail: str) -> None:
        self.state = STOPPED
        self.stop_info = StopInfo(self.step_count, reason, detail)
        self._pending_steps = 0

    # -- observed steps: the user's loop trains, the backend reports --------------------------
    @property
    def wants_trace(self) -> bool:
        """Whether the next observed step should be recorded op by op (a step-into)."""
        return self._pending_traced

    def observe_step(self, record, waited: bool = False) -> bool:
        """A step the user's loop is taking, reported before its update. It first waits at the
        step boundary while the run is paused (on the loop's own thread; commands are applied as
        they come), then checks and measures the step. True: let the update happen, then call
        `observed_update_done()`. False: the run has ended, or this step failed (a NaN, or the
        model's code raised) and the run stopped: the update must not happen. `waited`: the
        caller has waited at the boundary itself (wait_at_boundary returned True)."""
        if not waited:
            self.wait_at_boundary()
        self._unsettled = None
        if self.done:
            return False
        traced, self._pending_traced = self._pending_traced, False
        self.clock.start_step()
        begun = self._begin(record, traced)
        if isinstance(begun, Snapshot):
            self.clock.end_step()
            return False
        self._observed = begun
        return True

    def observed_update_done(self) -> Snapshot | None:
        """After the observed step's update: its numbers, warnings and snapshot."""
        ctx, self._observed = self._observed, None
        if ctx is None:
            return None
        snapshot = self._finish(ctx)
        self.clock.end_step()
        return snapshot

    def observed_run_ended(self, error: str | None = None) -> None:
        """The user's loop has ended: the run is finished, or stopped with the error it ended on."""
        if not self.done:
            if error is None:
                self.state = FINISHED
            else:
                self._stop("error", error)
        if self.snapshot is not None:
            self.snapshot = replace(self.snapshot, state=self.state, stop=self.stop_info)

    def wait_at_boundary(self, timeout: float | None = None) -> bool:
        """Block until the run may take another step (running, or a step pending, which this
        takes) or has ended: True; or until `timeout` seconds pass: False."""
        while True:
            self.apply_commands()
            if self.done or self.state == RUNNING:
                return True
            if self._pending_steps > 0:
                self._pending_steps -= 1
                return True
            # (the step the loop is held at has already replaced the gradients: its weights only)
            self._settle(histograms=False)
            try:
                self._apply(*self._commands.get(timeout=timeout))
            except queue.Empty:
                return False

    # -- one driven step ------------------------------------------------------------------
    def _train_step(self, traced: bool) -> Snapshot:
        spec = self.spec
        try:
            batch = self._batches.next()
        except StopIteration:
            self._settle()
            self._stop("data_exhausted", "the model file's data iterator has no more batches")
            return self._publish_stopped()
        except MODEL_ERRORS as error:
            self._settle()
            self._stop("error", "the model file's data raised an error:\n" + _describe_error(error, spec.path))
            return self._publish_stopped()
        self._unsettled = None   # (the step replaces the gradients and activations it would read)
        if self._scheduler_due is not None and not self._step_scheduler():
            return self._publish_stopped()
        try:
            record = self.backend.step(batch, traced)
        except ModelError as failure:
            self._stop("error", f"step {self.step_count + 1}: " + _describe_error(failure.error, spec.path))
            return self._publish_stopped()
        begun = self._begin(record, traced)
        if isinstance(begun, Snapshot):
            return begun
        try:
            self.backend.apply_update(record, self.regularizer)
        except ModelError as failure:
            self._stop("error", f"step {self.step_count + 1}: {self.backend.optimizer_name}.step: "
                       + _describe_error(failure.error, spec.path))
            return self._publish_stopped()
        if spec.scheduler is not None:
            self._scheduler_due = record.loss
        return self._finish(begun)

    def _step_scheduler(self) -> bool:
        """The model file's scheduler follows the last optimiser step (PyTorch's order). It runs when
        the next step begins, so each step's snapshot shows the rate that step used. False if it failed."""
        scheduler, loss = self.spec.scheduler, self._scheduler_due
        self._scheduler_due = None
        try:
            if "metrics" in inspect.signature(scheduler.step).parameters:   # ReduceLROnPlateau
                scheduler.step(loss)
            else:
                scheduler.step()
        except MODEL_ERRORS as error:
            self._stop("error", f"step {self.step_count + 1}: {type(scheduler).__name__}.step: "
                       + _describe_error(error, self.spec.path))
            return False
        return True

    # -- what every step goes through, driven or observed ----------------------------------
    def _begin(self, record, traced: bool):
        """Before the update: the finite check, the penalty, and the two-step quantities' first
        half. A StepContext, or the Snapshot of a step that could not go on."""
        if self.backend.layers() is not self.layer_info:
            self._follow_layers()
        if traced:
            self.last_trace = record.recorded
        # ‖g‖ per gradient and whether every entry is finite, in one pass in the usual case (a
        # finite gradient of 1e200s is an exploding gradient, not a NaN: its norm is rescaled).
        checked = {name: probes.checked_norm(g) for name, g in record.data_grads.items() if g is not None}
        if not math.isfinite(record.loss) or not all(finite for _, finite in checked.values()):
            return self._non_finite(record)
        ctx = StepContext(self.step_count + 1, record, self.backend, self.regularizer, self.config.thresholds,
                          self.clock, traced, self._rests_after_this_step())
        ctx.hold = self.may_pause or len(self.breakpoints) > 0
        ctx.wants_detail = self.breakpoints.reads_detail
        ctx.grad_norms = {name: n for name, (n, _) in checked.items()}
        if self.regularizer is not None:
            try:
                ctx.penalty_grads, ctx.penalty = self.backend.add_penalty(self.regularizer)
            except ModelError as failure:
                self._stop("error", f"step {ctx.step}: the regulariser failed: "
                           + _describe_error(failure.error, self.spec.path))
                return self._publish_stopped()
        for quantity in self._before:
            quantity.before_update(ctx)
        return ctx

    def _now(self, condition, layers, ctx):
        """What a clearing condition's quantity says of it now (see WarningMonitor.update)."""
        for quantity in self._checks:
            if condition.kind in quantity.kinds:
                told = quantity.now(condition, layers, ctx)
                if told is not None:
                    return told
        return None

    def _finish(self, ctx: StepContext) -> Snapshot:
        """After the update: every quantity's numbers, the warnings, the history, breakpoints."""
        self.step_count = step = ctx.step
        for quantity in self.quantities:
            quantity.measure(ctx)
        for what, error in ctx.failures:
            self._stop("error", what + _describe_error(error, self.spec.path))
        layers = self._step_layers(ctx)
        # A quantity's quick look at its numbers (ctx.warn) decides whether its full check runs
        # (the layers' statistics are built the first time one of them reads them); the loss and
        # curvature checks are cheap: every step.
        conditions = []
        for quantity in self._checks:
            if quantity.always_check or quantity in ctx.warn:
                conditions += quantity.conditions(layers, ctx)
        events = self.monitor.update(step, conditions, lambda c: self._now(c, layers, ctx))
        self.warnings.extend(events)
        hit = self._check_breakpoints(step, ctx.record.loss, layers, events)
        if self.max_steps is not None and step >= self.max_steps and not self.done:
            self.state = FINISHED
        resting = self.done or (self.state != RUNNING and self._pending_steps == 0)
        if resting and not ctx.resting and self._update_ratio.settle(ctx, ctx.series):
            layers = self._step_layers(ctx)   # (a breakpoint fired: the step is measured at rest)
        self.history.record(step, ctx.series)
        self._unsettled = None if resting else ctx
        snapshot = Snapshot(
            step=step, epoch=self.epoch, state=self.state, loss=ctx.record.loss, val_loss=self._loss.last_val,
            penalty=ctx.penalty, lr=self.lr, steps_per_sec=self._rate.tick(), regularizer=self._regularizer_pair(),
            layers=layers, warnings=tuple(events), holding=tuple(self.monitor.holding()), stop=self.stop_info,
            hit=self._hit_info(hit), histograms=self._histograms.take(ctx, resting), trace=ctx.record.trace,
            curvature=self.curvature, optimizer_state=self._optimizer_state.latest, bayes=self.bayes,
            batch_noise=self.batch_noise, data_view=self._data_view.take(ctx, resting))
        self.snapshot = snapshot
        return snapshot

    def _step_layers(self, ctx: StepContext) -> records.StepLayers:
        return records.StepLayers(self._layout, ctx.param_numbers, ctx.layer_grads, ctx.detail, ctx.hessian,
                                  ctx.layer_acts)

    def _settle(self, histograms: bool = True) -> None:
        """The run has come to rest after a step that did not expect to be the last before it (a
        pause pressed while running): what is measured at rest is measured now, from the weights
        that step left, into its snapshot. (The step is already in the history without them.)"""
        ctx, self._unsettled = self._unsettled, None
        if ctx is None or self.snapshot is None or self.snapshot.step != ctx.step:
            return
        changes = {"histograms": self._histograms.take(ctx, resting=True)} if histograms else {}
        changes["data_view"] = self._data_view.take(ctx, resting=True)
        if self._update_ratio.settle(ctx, None):
            changes["layers"] = self._step_layers(ctx)
        self.snapshot = replace(self.snapshot, **changes)

    def _rests_after_this_step(self) -> bool:
        """Whether the run will stand still after the step about to be taken (paused with no
        steps left, or at its last step): the moment to measure everything."""
        last = self.max_steps is not None and self.step_count + 1 >= self.max_steps
        return last or (self.state != RUNNING and self._pending_steps == 0)

    def _regularizer_pair(self) -> tuple:
        return (self.regularizer.kind, self.regularizer.lam) if self.regularizer else ("none", 0.0)

    def _hit_info(self, hit: Hit | None):
        """The record of a breakpoint hit, for the snapshot (the hit itself is kept, to say why
        the run stopped if it is ended there)."""
        self._hit = hit
        return None if hit is None else records.HitInfo(hit.breakpoint.id, hit.breakpoint.kind,
                                                        hit.breakpoint.text, hit.step, hit.why)

    def _check_breakpoints(self, step, loss, layers, events) -> Hit | None:
        if not len(self.breakpoints):
            return None
        params = {p.name: p for layer in layers for p in layer.params.values()}
        c = self.curvature
        env = _Env({"loss": loss, "val_loss": self._loss.last_val, "step": step, "epoch": self.epoch,
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
        threshold = self.config.thresholds.sparsity_threshold
        weights = self.backend.weights()
        by_layer: dict = {}
        for p in self.params:
            data = weights[p.name]
            sparsity = float(np.count_nonzero(np.abs(data) < threshold)) / max(p.size, 1)
            by_layer.setdefault(p.layer, {})[p.short] = records.ParamStats(
                p.name, p.shape, 0.0, 0.0, 0.0, probes.norm(data), 0.0, 0.0, sparsity)
        layers = tuple(records.LayerStats(layer.name, layer.type, by_layer.get(layer.name, records.EMPTY),
                                         activation=layer.activation) for layer in self.layer_info)
        snapshot = Snapshot(step=0, epoch=0, state=self.state, loss=math.nan, val_loss=None, penalty=0.0,
                            lr=self.lr, steps_per_sec=0.0, regularizer=self._regularizer_pair(), layers=layers,
                            warnings=(), holding=(), histograms=self._histograms.take(),
                            data_view=self._data_view.take())
        self.snapshot = snapshot
        return snapshot

    def _non_finite(self, record) -> Snapshot:
        """Find the first op that produced a NaN or Inf, warn, and stop without updating the weights."""
        where, summary, self.last_trace = self.backend.locate_non_finite(record)
        loss_value = record.loss
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
        return self._publish_stopped(events=(event,), trace_summary=summary, loss=loss_value,
                                     hit=hit if hit and hit.breakpoint.kind == "warning" else None)

    def _publish_stopped(self, events=(), trace_summary=None, loss=None, hit=None) -> Snapshot:
        """The snapshot of a step that could not finish: the last good layers, and what went wrong."""
        previous = self.snapshot
        snapshot = Snapshot(
            step=self.step_count, epoch=self.epoch, state=self.state, hit=self._hit_info(hit),
            loss=loss if loss is not None else (previous.loss if previous else math.nan),
            val_loss=previous.val_loss if previous else None, penalty=previous.penalty if previous else 0.0,
            lr=self.lr, steps_per_sec=0.0, regularizer=self._regularizer_pair(),
            layers=previous.layers if previous else (), warnings=tuple(events),
            holding=tuple(self.monitor.holding()), stop=self.stop_info, trace=trace_summary,
            histograms=self._histograms.take(), curvature=self.curvature,
            optimizer_state=self.backend.optimizer_state(), bayes=self.bayes, batch_noise=self.batch_noise)
        self.snapshot = snapshot
        return snapshot


def backend_for(spec: ModelSpec):
    """The backend for the framework the model file uses."""
    if spec.framework == "torch":
        from .torch_backend import TorchBackend   # imports torch: only for a model that uses it
        return TorchBackend(spec.model, spec.loss, spec.optimizer)
    return CalcmlBackend(spec.model, spec.loss, spec.optimizer)


def _describe_error(error: BaseException, path: str) -> str:
    if isinstance(error, SystemExit):   # sys.exit() inside the model is the model's doing
        frames = user_traceback(error, path).rsplit("\n", 1)[0] if error.__traceback__ else ""
        said = f"the model called exit({error.code!r}): training cannot go on after it"
        return f"{frames}\n{said}" if frames.startswith("Traceback") else said
    return user_traceback(error, path)
