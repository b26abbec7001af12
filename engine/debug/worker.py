"""The training side of the interface: runs a Session in its own process, speaking JSON lines.

    python -m calcml.debug.worker MODEL.py [--seed S] [--steps N] [--break SPEC ...]

Commands arrive on stdin, one JSON object per line ({"cmd": "pause"}, {"cmd": "step", "n": 1},
{"cmd": "lr", "value": 0.01}, ...). Messages leave on the original stdout, one per line:
hello, snapshot, history, log, breakpoints, error, bye. Whatever the model file prints goes out
as log messages, so it can never draw over the interface. Snapshots are coalesced to about
`PUBLISH_HZ` a second (every warning is still sent), history a few times a second: the front end
never receives one message per training step.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import threading
import time

from . import wire
from .allocator import keep_freed_memory
from .breakpoints import BreakpointError
from .loader import ModelFileError, load_model_file
from .session import Session, session_config

PUBLISH_HZ = 20
HISTORY_HZ = 2


class _Channel:
    """Thread-safe writer of JSON lines to the front end."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict) -> None:
        data = (wire.dumps(message) + "\n").encode("utf-8")
        with self._lock:
            try:
                self._stream.write(data)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                os._exit(0)  # the front end is gone: nothing left to train for


class _LogWriter(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: the model file's prints become log messages."""

    def __init__(self, channel: _Channel, stream: str):
        self._channel, self._stream = channel, stream

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self._channel.send({"type": "log", "stream": self._stream, "text": text})
        return len(text)


def model_info(session: Session) -> dict:
    spec = session.spec
    return {"path": spec.path, "name": spec.name, "description": spec.description, "seed": spec.seed,
            "steps": session.max_steps, "optimizer": type(session.optimizer).__name__,
            "layers": [{"name": n, "type": type(m).__name__} for n, m in session.layers],
            "params": [{"name": n, "shape": list(p.shape)} for n, p in session._params],
            "curvature_every": session.curvature_every, "curvature_note": session.curvature_note,
            "bayes_layers": [n for n, _ in session._bayes_layers], "sampler": session._sampler,
            "noise_every": session.config.noise_every, "noise_samples": session.config.noise_samples,
            "bayes_note": session.bayes_note}


def _notes(session: Session) -> tuple:
    """What model_info says about measurements that a failure can turn off mid-run."""
    return (session.curvature_every, session.curvature_note, session.config.noise_every, session.bayes_note)


class Worker:
    def __init__(self, session: Session, channel: _Channel):
        self.session = session
        self.channel = channel
        self.wake = threading.Event()
        self.quit = threading.Event()
        self._events: list = []
        self._last_publish = 0.0
        self._last_history = 0.0
        self._history_step = 0
        self._sent = None
        self._state = None
        self._histograms = None
        self._urgent = 0
        self._curvature = _notes(session)

    def handle(self, command: dict) -> None:
        s = self.session
        name = command.get("cmd")
        # The person who sent it is waiting to see its effect: publish the next two steps at once
        # (the step already running when the command came still used the old settings).
        self._urgent = 2
        try:
            if name == "run":
                s.run()
            elif name == "pause":
                s.pause()
            elif name == "step":
                s.step(int(command.get("n", 1)))
            elif name == "step_into":
                s.step_into()
            elif name == "lr":
                s.set_lr(float(command["value"]))
            elif name == "lr_scale":
                s.scale_lr(float(command["factor"]))
            elif name == "reg":
                s.set_regularizer(command["kind"], command.get("lam"))
            elif name == "break_add":
                s.add_breakpoint(command["text"])
                self.send_breakpoints()
            elif name == "break_remove":
                s.remove_breakpoint(int(command["id"]))
                self.send_breakpoints()
            elif name == "stop":
                s.stop()
            elif name == "quit":
                self.quit.set()
        except (BreakpointError, ValueError, KeyError, TypeError) as error:
            self.send_breakpoints(error=str(error)) if name == "break_add" else \
                self.channel.send({"type": "refused", "cmd": name, "message": str(error)})
        self.wake.set()

    def send_breakpoints(self, error: str | None = None) -> None:
        items = [{"id": b.id, "text": b.text, "describe": b.describe()} for b in self.session.breakpoints]
        self.channel.send({"type": "breakpoints", "items": items, "error": error})

    def read_commands(self, stream) -> None:
        for line in stream:
            line = line.strip()
            if not line:
                continue
            try:
                command = wire.loads(line)
            except ValueError:
                continue
            if isinstance(command, dict):
                self.handle(command)
        self.quit.set()  # stdin closed: the front end has gone
        self.wake.set()

    def publish(self, snapshot, force: bool = False) -> None:
        """Send the latest snapshot (at most PUBLISH_HZ a second unless something needs showing now),
        every warning since the last one, the state when it changed, and the history now and then."""
        now = time.monotonic()
        s = self.session
        if snapshot is not None:
            self._events.extend(snapshot.warnings)
            if snapshot.histograms is not None:
                self._histograms = snapshot.histograms
        latest = s.snapshot
        urgent = force or self._urgent > 0 or (snapshot is not None and (
            snapshot.hit is not None or snapshot.trace is not None or snapshot.stop is not None
            or snapshot.state != "running"))
        if snapshot is not None and self._urgent > 0:
            self._urgent -= 1
        if latest is not None and latest is not self._sent and (
                urgent or now - self._last_publish >= 1.0 / PUBLISH_HZ):
            sent = latest
            if latest.histograms is None and self._histograms is not None:
                # the step that computed histograms was coalesced away: carry them on this one
                latest = latest._replace(histograms=self._histograms)
            self.channel.send({"type": "snapshot", "snapshot": wire.snapshot_to_wire(latest, self._events)})
            self._events, self._sent, self._last_publish, self._histograms = [], sent, now, None
        if _notes(s) != self._curvature:
            # a failed measurement turned curvature or gradient noise off: the front end learns why
            # from the model info
            self._curvature = _notes(s)
            self.channel.send({"type": "hello", "model": model_info(s)})
        if (s.state, s.stop_info) != self._state:
            self._state = (s.state, s.stop_info)
            self.channel.send({"type": "state", "state": s.state,
                               "stop": s.stop_info.to_dict() if s.stop_info else None})
        if s.step_count != self._history_step and (urgent or now - self._last_history >= 1.0 / HISTORY_HZ):
            self.channel.send({"type": "history", "series": wire.history_to_wire(s.history)})
            self._history_step, self._last_history = s.step_count, now

    def loop(self) -> None:
        while not self.quit.is_set():
            snapshot = self.session.tick()
            if snapshot is not None:
                self.publish(snapshot)
                continue
            self.publish(None, force=True)  # idle: flush what coalescing held back
            self.wake.wait(0.1)
            self.wake.clear()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="calcml.debug.worker")
    parser.add_argument("model")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--break", dest="breaks", action="append", default=[])
    parser.add_argument("--run", action="store_true", help="start training at once")
    parser.add_argument("--json", help="write the run report here when quitting")
    parser.add_argument("--curvature-every", type=int, help="steps between curvature measurements (0: off)")
    args = parser.parse_args(argv)
    keep_freed_memory()   # no page faults for the arrays each step frees and takes again

    # The protocol keeps the real stdout; anything else written to fd 1 goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    channel = _Channel(protocol)
    sys.stdout = _LogWriter(channel, "stdout")
    sys.stderr = _LogWriter(channel, "stderr")
    try:
        spec = load_model_file(args.model, seed=args.seed, steps=args.steps)
    except ModelFileError as error:
        channel.send({"type": "error", "kind": "model_file", "message": str(error)})
        return 2
    session = Session(spec, session_config(args.curvature_every))
    worker = Worker(session, channel)
    for text in args.breaks:
        try:
            session.add_breakpoint(text)
        except BreakpointError as error:
            channel.send({"type": "error", "kind": "usage", "message": f"breakpoint refused: {error}"})
            return 2
    channel.send({"type": "hello", "model": model_info(session)})
    worker._sent = session.initial_snapshot()
    channel.send({"type": "snapshot", "snapshot": wire.snapshot_to_wire(worker._sent)})
    worker.send_breakpoints()
    threading.Thread(target=worker.read_commands, args=(sys.stdin,), daemon=True).start()
    if args.run:
        session.run()
    worker.loop()
    if args.json:
        from .report import write_report
        write_report(session, args.json)
    channel.send({"type": "bye"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
