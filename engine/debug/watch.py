"""`calcml.watch(model, optimizer)`: debug the training that a PyTorch script does in its own loop.

The script trains as it always does; the session observes each step at the optimiser: a hook
before `optimizer.step()` reads the step (each layer's captured input, output and gradients,
the parameters' gradients, the loss) and may hold the loop there while the run is paused; a
hook after it measures the update and publishes the snapshot. What the script sees: nothing,
unless it looks at the hooks. While watched, `torch.Tensor.backward` is wrapped to note the loss
it was called on (a scalar; on a step due a curvature measurement, the Hessian-vector products
are taken there, before the backward frees the graph), and the model's modules carry calcml's
forward hooks; `detach()`
removes all of it. A step whose gradients are not finite is not applied (its gradients are set
to None, which every torch optimiser skips), and the run stops there, with where it began.

Without an interface (a plain `python train.py`), warnings are printed to stderr as they start,
and a summary (and the `--json`-style report, with `report=PATH`) when the run detaches: after
`steps` steps, on a stop, or when the script ends.
"""
from __future__ import annotations

import atexit
import sys
import threading

import torch

from .config import session_config
from .loader import ModelSpec
from .session import Session
from .torch_backend import TorchBackend

_backward = torch.Tensor.backward
_Scaler = torch.amp.GradScaler
_scale, _scaler_step = _Scaler.scale, _Scaler.step
HEARTBEAT = 10.0                # seconds between rank 0's broadcasts while it is paused (torch.distributed)
_watching: list = []            # the active watches (the wrappers below tell each what they saw)
_lock = threading.Lock()


def _noting_backward(self, *args, **kwargs):
    if self.numel() == 1:
        for w in tuple(_watching):
            if self is not w._scaled:       # (a GradScaler's scaled loss: its loss was noted unscaled)
                w.loss, w.grad_scale = self, 1.0
                w.before_backward(self)
    return _backward(self, *args, **kwargs)


def _noting_scale(self, outputs):
    """AMP: GradScaler.scale(loss) multiplies the loss by the scale S before backward, so every
    gradient of that backward pass is S times the true one. The loss is noted unscaled, and S,
    so that the layers' gradients can be divided by it (the parameters' are unscaled by
    GradScaler.step itself before optimizer.step)."""
    scaled = _scale(self, outputs)
    if torch.is_tensor(outputs) and outputs.numel() == 1 and self.is_enabled():
        scale = float(self.get_scale())
        for w in tuple(_watching):
            w.loss, w.grad_scale, w._scaled = outputs, scale, scaled
    return scaled


def _noting_scaler_step(self, optimizer, *args, **kwargs):
    """AMP: GradScaler.step skips optimizer.step when the scaled gradients overflowed; the
    watch of that optimiser is told the step was skipped."""
    watches = [w for w in tuple(_watching) if w.backend.optimizer is optimizer]
    for w in watches:
        w._stepped = False
    result = _scaler_step(self, optimizer, *args, **kwargs)
    for w in watches:
        if not w._stepped:
            w.skipped(float(self.get_scale()))
    return result


class Watch:
    """One watched model and optimiser; `session` is the debugger session observing them."""

    def __init__(self, model, optimizer, *, regularizer=None, steps=None, config=None, on_step=None,
                 report: str | None = None, name: str = "script", path: str | None = None, description: str = "",
                 start_paused=False, on_done=None, mid_step=False, serve=None, record: str | None = None,
                 private: bool = False):
        """`on_done`: called at an optimiser step once the run has ended, instead of detaching
        (calcml-debug holds the script there until the interface quits). `mid_step`: made from
        inside an optimiser step (the first one of an unmodified script): that step is not
        observed, since its forward pass ran before the hooks were there.

        `serve`: True (a Unix socket of this user's) or an address (serve.parse_address) to
        serve the run to `calcml-debug --attach` viewers; `record`: a recording file (both:
        publish.Publisher). Under torch.distributed each rank serves at the address derived
        for it (serve.for_rank) and measures its own steps there (publish_to); only rank 0 is
        controlled (the others follow it)."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"calcml.watch: model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"calcml.watch: optimizer must be a torch.optim optimiser, got {type(optimizer).__name__}")
        self.rank, self.world = _distributed()
        self.backend = TorchBackend(model, None, optimizer)
        spec = ModelSpec(path=path or "<watched script>", name=name, description=description, model=model, loss=None,
                         data=None, optimizer=optimizer, regularizer=regularizer, batch_size=None, val_data=None,
                         seed=0, steps=steps, framework="torch")
        # (curvature is measured at the loop's backward(), and not under torch.distributed, where
        # the other processes would wait for the extra backward passes)
        self.session = Session(spec, config or session_config(curvature_every=None if self.world == 1 else 0),
                               backend=self.backend)
        if not start_paused:
            self.session.run()
        self.loss = None
        self.grad_scale = 1.0          # AMP's loss scale for this step's gradients (1 without AMP)
        self._scaled = None
        self._stepped = True
        self.skipped_steps = 0         # steps GradScaler skipped (overflowed gradients)
        self.on_skip = None            # told (scale) of each: the interface shows it
        # Under torch.distributed, rank 0 observes, prints and reports; every rank applies or
        # skips each step as rank 0 decides (so a pause on rank 0 holds them all: lockstep).
        # A published rank other than 0 observes too, for its own viewers (publish_to).
        self.report = report if self.rank == 0 else None
        self.on_step = (on_step if on_step is not None else _Printer(self.session)) if self.rank == 0 else None
        self._applying = False
        self._counted = False          # the step under way is observed (not let through unobserved)
        self.on_done = on_done
        self._unobserved = 1 if mid_step else 0   # steps to let through unobserved
        self.publisher = None
        if serve or record:
            self.publish_to(_publisher(self, serve, record if self.rank == 0 else None, private, name))
        self._handles = [optimizer.register_step_pre_hook(self._before_step),
                         optimizer.register_step_post_hook(self._after_step)]
        self.backend.observe()
        with _lock:
            _watching.append(self)
            torch.Tensor.backward = _noting_backward
            _Scaler.scale, _Scaler.step = _noting_scale, _noting_scaler_step
        atexit.register(self.detach)

    def publish_to(self, publisher) -> None:
        """Publish each observed step through `publisher` (publish.Publisher, started), which
        is closed on detach. Under torch.distributed every published rank then observes its own
        steps: what it measures before the all-reduce (each layer's ‖∂L/∂out‖, from its own part
        of the batch) differs from rank to rank, and its viewers see it. Rank 0 still decides
        alone: another rank's session never holds its loop (it has no breakpoints, no viewer
        controls it, and what it answers is not asked). While the loop is held (a pause, or
        another rank waiting for rank 0's word) a thread sends what coalescing held back: the
        pause itself, the last step measured."""
        self.publisher = publisher
        if self.world > 1 and self.rank != 0:
            self.session.run()
        threading.Thread(target=publisher.worker.flush_while_busy, daemon=True, name="calcml-flush").start()

    @property
    def _observes(self) -> bool:
        """This rank measures its steps: rank 0 always, another rank when it is published."""
        return self.rank == 0 or self.publisher is not None

    def before_backward(self, loss) -> None:
        """The loop is about to call backward() on its loss: if the step is due a curvature
        measurement, it is taken now, while the graph is whole (the backward frees it)."""
        s = self.session
        if self.world == 1 and not self._unobserved and loss.requires_grad and s.curvature_due_next():
            step = s.step_count + 1
            self.backend.measure_curvature_at_backward(loss, s.regularizer, step, iters=s.config.curvature_iters,
                                                       samples=s.config.curvature_samples, seed=step - 1)

    def skipped(self, scale: float) -> None:
        """GradScaler skipped an optimiser step: nothing trained, nothing to measure."""
        self.skipped_steps += 1
        self.backend.observed_record(self.loss)   # this step's captures are let go
        note = (f"step skipped by torch.amp.GradScaler: the gradients scaled by {scale:g} overflowed "
                f"(inf or NaN); it lowers the scale at its next update")
        if self.on_skip is not None:
            self.on_skip(note)
        elif isinstance(self.on_step, _Printer):
            _say(note)

    def _before_step(self, optimizer, args, kwargs):
        self._stepped = True
        self._counted = False
        if self._unobserved:
            self._unobserved -= 1
            self._applying = False
            self.backend.observed_record(self.loss)   # (what it captured is incomplete: dropped)
            return
        self._counted = True
        record = self.backend.observed_record(self.loss, grad_scale=self.grad_scale)
        if self.world > 1:
            self._held_together()
        measured = self.session.observe_step(record, waited=self.world > 1 and self.rank == 0) \
            if self._observes else False
        self._applying = measured if self.rank == 0 else False   # (another rank's answer is not asked)
        if self.world > 1:
            self._applying = _rank0_decides(self._applying)
            if self.rank != 0 and self._applying:
                return                # rank 0 measures it; this rank just trains
        if not self._applying:       # a non-finite step, or the run has ended: no update
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            self._publish(self.session.snapshot)
            if self.on_done is not None:
                self.on_done()
            else:
                self.detach()

    def _held_together(self) -> None:
        """Under torch.distributed, every rank waits at the step boundary while rank 0 is paused. The
        others wait in a broadcast, which times out (the process group's timeout, 30 minutes by
        default, then the job dies), so rank 0 says "still paused" every HEARTBEAT seconds, and
        "go" when it may take the step (one more small broadcast a step)."""
        while True:
            go = self.session.wait_at_boundary(HEARTBEAT) if self.rank == 0 else False
            if _rank0_decides(go):
                return

    def _after_step(self, optimizer, args, kwargs):
        if not self._counted:    # the step let through unobserved
            return
        if self._applying and self._observes:   # (None where this rank's session did not measure it)
            self._publish(self.session.observed_update_done())
        self._applying = False
        ended = self.session.done if self.rank == 0 else False
        if self.world > 1:       # every rank stops watching after the same step
            ended = _rank0_decides(ended)
        if ended and self.on_done is None:
            self.detach()

    def _publish(self, snapshot) -> None:
        if snapshot is None:
            return
        if self.publisher is not None:
            self.publisher.worker.observed(snapshot)
        if self.on_step is not None:
            self.on_step(snapshot)

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def detach(self) -> None:
        """Stop watching: the hooks removed, the summary printed and the report written (once)."""
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.backend.stop_observing()
        with _lock:
            if self in _watching:
                _watching.remove(self)
            if not _watching:
                torch.Tensor.backward = _backward
                _Scaler.scale, _Scaler.step = _scale, _scaler_step
        finish = getattr(self.on_step, "finish", None)
        if finish is not None:
            finish()
        if self.report:
            from .report import write_report
            write_report(self.session, self.report)
        if self.publisher is not None:
            self.publisher.worker.quit.set()     # (its flushing thread ends)
            self.publisher.close()        # (it gives the viewers a moment to be told)


def _publisher(watch: Watch, serve, record, private: bool, name: str):
    """The watch's run published (serve.py, recording.py); where, said on stderr."""
    from . import serve as serving
    from .publish import Publisher
    address = None
    if serve:
        base = serving.parse_address(serve) if isinstance(serve, str) else serving.default_address(name)
        address = serving.for_rank(base, watch.rank)
    publisher = Publisher(watch.session, address=address, record=record, private=private, rank=watch.rank,
                          world=watch.world, control=watch.rank == 0)
    publisher.start()
    if watch.rank == 0:
        _say(publisher.attach_line())
    return publisher


def _distributed() -> tuple:
    """(this process's rank, the number of processes) under torch.distributed, else (0, 1)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1




def _rank0_decides(apply: bool) -> bool:
    """Rank 0's decision for this step, on every rank (one small broadcast a step)."""
    import torch.distributed as dist
    flag = torch.tensor([1 if apply else 0], dtype=torch.int32)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def watch(model, optimizer, **options) -> Watch:
    """Debug the training of `model` by `optimizer` in the calling script's own loop (see the
    module's note). Options: regularizer (cm.reg.L1/L2, added before each step), steps (detach
    after that many), report (a path for the JSON report), config (a SessionConfig)."""
    return Watch(model, optimizer, **options)


class _Printer:
    """Without an interface: each warning as it starts, and a summary at the end, on stderr."""

    def __init__(self, session: Session):
        self.session = session

    def __call__(self, snapshot) -> None:
        for event in snapshot.warnings:
            if event.event == "start":
                _say(f"step {event.step}: {event.kind}: {event.message}")

    def finish(self) -> None:
        s = self.session
        stop = s.stop_info
        how = f"stopped at step {stop.step} ({stop.reason}): {stop.detail}" if stop else f"{s.step_count} steps watched"
        started = sum(1 for w in s.warnings if w.event == "start")
        _say(f"{how}; {started} warning{'s' if started != 1 else ''}")


def _say(text: str) -> None:
    try:
        print(f"calcml: {text}", file=sys.stderr, flush=True)
    except (OSError, ValueError):   # stderr closed at exit
        pass
