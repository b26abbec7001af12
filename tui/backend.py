"""Where the interface gets its data: a training process (normal use) or an in-process session (tests).

Both feed the same `DebugState` with the same JSON messages (see calcml.debug.worker); the app
only reads the state, on a timer, and only sends commands. It never waits on training.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque

from calcml.debug import wire


class DebugState:
    """What the front end knows about the run. Written by one backend thread, read by the app;
    each part has a version number so the app redraws only what changed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.model: dict | None = None
        self.snapshot = None
        self.first_histograms: dict | None = None
        self.history: dict = {}
        self.warnings: deque = deque(maxlen=2000)
        self.warnings_total = 0                # ever received (the deque forgets the oldest)
        self.logs: deque = deque(maxlen=2000)
        self.logs_total = 0
        self.breakpoints: list = []
        self.breakpoint_error: str | None = None
        self.refused: str | None = None
        self.state = "starting"
        self.stop: dict | None = None
        self.error: str | None = None          # a model-file or usage error: nothing could start
        self.last_message = time.monotonic()
        self.versions = {k: 0 for k in ("model", "snapshot", "history", "warnings", "logs", "breakpoints",
                                        "state", "trace")}
        self.wake = None                       # called (from the reader thread) on urgent changes
        self.trace = None                      # the latest step-into, kept until the next one
        self.trace_step: int | None = None

    def _bump(self, *keys) -> None:
        for k in keys:
            self.versions[k] += 1

    def apply(self, message: dict) -> None:
        kind = message.get("type")
        urgent = False
        with self.lock:
            self.last_message = time.monotonic()
            if kind == "snapshot":
                snapshot = wire.snapshot_from_wire(message["snapshot"])
                previous = self.snapshot
                # a command taking effect (lr, regulariser) or a new warning: show it now
                urgent = bool(snapshot.warnings) or (previous is not None and (
                    snapshot.lr != previous.lr or snapshot.regularizer != previous.regularizer))
                self.snapshot = snapshot
                if snapshot.histograms and self.first_histograms is None:
                    self.first_histograms = snapshot.histograms
                if snapshot.warnings:
                    self.warnings.extend(snapshot.warnings)
                    self.warnings_total += len(snapshot.warnings)
                    self._bump("warnings")
                if snapshot.trace is not None:
                    self.trace = snapshot.trace
                    self.trace_step = snapshot.step
                    self._bump("trace")
                urgent = urgent or snapshot.hit is not None or snapshot.stop is not None
                if self.state in ("starting",):
                    self.state = snapshot.state
                    self._bump("state")
                self._bump("snapshot")
            elif kind == "history":
                self.history = wire.history_from_wire(message["series"])
                self._bump("history")
            elif kind == "state":
                self.state, self.stop = message["state"], message["stop"]
                self._bump("state")
                urgent = True
            elif kind == "hello":
                self.model = message["model"]
                self._bump("model")
            elif kind == "log":
                self._log(message["stream"], message["text"])
            elif kind == "breakpoints":
                self.breakpoints = message["items"]
                self.breakpoint_error = message.get("error")
                self._bump("breakpoints")
            elif kind == "refused":
                self.refused = message["message"]
                self._log("calcml", message["message"] + "\n")
            elif kind == "error":
                self.error = message["message"]
                self.state = "stopped"
                self.stop = {"step": 0, "reason": "error", "detail": message["message"]}
                self._bump("state")
            elif kind == "bye":
                pass
        if urgent and self.wake is not None:
            self.wake()  # a change a person is waiting to see: don't wait for the next poll

    def _log(self, stream: str, text: str) -> None:
        self.logs.append((stream, text))
        self.logs_total += 1
        self._bump("logs")

    def since(self, name: str, seen: int) -> tuple:
        """(items appended to `warnings` or `logs` after the first `seen`, the new total)."""
        with self.lock:
            items, total = list(getattr(self, name)), getattr(self, name + "_total")
        new = min(len(items), total - seen)
        return (items[len(items) - new:] if new > 0 else []), total

    def log(self, stream: str, text: str) -> None:
        with self.lock:
            self._log(stream, text)

    def ended(self, detail: str) -> None:
        """The training side is gone (crashed, killed): keep everything, say so."""
        with self.lock:
            if self.state not in ("finished", "stopped"):
                self.state = "stopped"
                self.stop = {"step": self.snapshot.step if self.snapshot else 0, "reason": "ended",
                             "detail": detail}
                self._bump("state")


class Backend:
    """Commands, by name; subclasses deliver them."""

    def __init__(self):
        self.state = DebugState()

    def send(self, command: dict) -> None:
        raise NotImplementedError

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def poll(self) -> None:
        """Called by the app's timer; a backend that needs driving does a little work here."""

    # conveniences
    def run(self):
        self.send({"cmd": "run"})

    def pause(self):
        self.send({"cmd": "pause"})

    def step(self, n: int = 1):
        self.send({"cmd": "step", "n": n})

    def step_into(self):
        self.send({"cmd": "step_into"})

    def set_lr(self, lr: float):
        self.send({"cmd": "lr", "value": lr})

    def scale_lr(self, factor: float):
        self.send({"cmd": "lr_scale", "factor": factor})

    def set_regularizer(self, kind: str, lam: float | None = None):
        self.send({"cmd": "reg", "kind": kind, "lam": lam})

    def add_breakpoint(self, text: str):
        self.send({"cmd": "break_add", "text": text})

    def remove_breakpoint(self, bp_id: int):
        self.send({"cmd": "break_remove", "id": bp_id})

    def stop(self):
        self.send({"cmd": "stop"})


class ProcessBackend(Backend):
    """Trains in a child process (`python -m calcml.debug.worker`): a hung or crashing model can
    be killed without touching the interface, and plots never compete with training for the GIL."""

    def __init__(self, model_path: str, seed: int | None = None, steps: int | None = None,
                 breakpoints=(), run: bool = True, json_path: str | None = None,
                 curvature_every: int | None = None):
        super().__init__()
        self.args = [sys.executable, "-m", "calcml.debug.worker", model_path]
        if seed is not None:
            self.args += ["--seed", str(seed)]
        if steps is not None:
            self.args += ["--steps", str(steps)]
        for text in breakpoints:
            self.args += ["--break", text]
        if run:
            self.args.append("--run")
        if json_path:
            self.args += ["--json", json_path]
        if curvature_every is not None:
            self.args += ["--curvature-every", str(curvature_every)]
        self.process: subprocess.Popen | None = None
        self._write_lock = threading.Lock()

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # BLAS threads that wait for a core the interface is using stall every matrix product:
        # leave the interface a core (unless the user chose the thread counts).
        threads = str(max(1, (os.cpu_count() or 2) - 1))
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, threads)
        self.process = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env=env, start_new_session=True)
        threading.Thread(target=self._read_messages, daemon=True, name="calcml-reader").start()
        threading.Thread(target=self._read_stderr, daemon=True, name="calcml-stderr").start()

    def _read_messages(self) -> None:
        for line in self.process.stdout:
            try:
                message = wire.loads(line)
            except ValueError:
                continue
            self.state.apply(message)
        code = self.process.wait()
        self.state.ended(f"the training process ended (exit code {code})")

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.state.log("stderr", line.decode("utf-8", "replace"))

    def send(self, command: dict) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        data = (wire.dumps(command) + "\n").encode("utf-8")
        with self._write_lock:
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def close(self, timeout: float = 0.5) -> None:
        """Ask the worker to quit; kill it if it does not (a hung model step cannot answer)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.send({"cmd": "quit"})
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        process.kill()
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            pass


class LocalBackend(Backend):
    """An in-process session driven by `pump()`: deterministic, for tests and recorded runs.

    Messages still go through the JSON wire format, so what the app sees is what a worker sends.
    """

    def __init__(self, session, auto_ticks: int = 0):
        super().__init__()
        from calcml.debug.worker import Worker, model_info

        self.session = session
        self.auto_ticks = auto_ticks     # ticks per poll() (0: only pump() trains)
        self._worker = Worker(session, _LocalChannel(self.state))
        self.state.apply({"type": "hello", "model": model_info(session)})
        first = session.initial_snapshot()
        self._worker._sent = first
        self.state.apply(wire.loads(wire.dumps({"type": "snapshot", "snapshot": wire.snapshot_to_wire(first)})))
        self._worker.send_breakpoints()

    def send(self, command: dict) -> None:
        self._worker.handle(command)

    def pump(self, ticks: int = 1) -> None:
        """Run up to `ticks` session ticks and publish everything (no coalescing)."""
        for _ in range(ticks):
            snapshot = self.session.tick()
            if snapshot is not None:
                self._worker.publish(snapshot, force=True)
        self._worker.publish(None, force=True)

    def poll(self) -> None:
        if self.auto_ticks:
            self.pump(self.auto_ticks)


class _LocalChannel:
    def __init__(self, state: DebugState):
        self.state = state

    def send(self, message: dict) -> None:
        self.state.apply(wire.loads(wire.dumps(message)))
