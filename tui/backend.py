"""Where the interface gets its data: a training process (normal use) or an in-process session (tests).

Both feed the same `DebugState` with the same JSON messages (see calcml.debug.worker); the app
only reads the state, on a timer, and only sends commands. It never waits on training.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque

import msgspec

from calcml.debug import commands, wire
from calcml.debug.safetext import clean, clean_obj

OUTPUT_FLUSH = 0.25   # seconds a partial line of the model's output waits for the rest of it


def decode(line):
    """A frame from the training process, checked and typed (wire.decode_message), every string
    in it cleaned first: nothing the model supplies may act on the terminal."""
    return wire.decode_message(line, strings=clean_obj)


def read_frames(stream, state) -> None:
    """Apply every frame on `stream` (lines) to `state` until it ends. Each is validated before
    use; a bad one is reported and skipped, never the end of the reading."""
    limit = wire.MAX_FRAME_BYTES
    while True:
        try:
            line = stream.readline(limit + 1)
        except (OSError, ValueError):
            break
        if not line:
            break
        if len(line) > limit and not line.endswith(b"\n"):
            head = line
            while line and not line.endswith(b"\n"):
                line = stream.readline(limit + 1)
            state.bad_frame(f"a message longer than {limit} bytes", head)
            continue
        try:
            message = decode(line)
        except wire.FrameError as error:
            state.bad_frame(str(error), line)
            continue
        try:
            state.apply(message)
        except Exception as error:   # valid by the schema, yet not applicable: the same
            state.bad_frame(f"{type(error).__name__}: {error}", line)


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
        self.internal_error: str | None = None # calcml's training process failed (a bug in calcml)
        self.loading: str | None = None        # the model file being loaded (until hello)
        self.quitting = threading.Event()      # the training process has begun to quit
        self.report: dict | None = None        # {"path", "ok", "message"} once a report was written
        self.bye = False                       # the training process said goodbye (a normal end)
        self.bad_frames = 0                    # malformed messages received (and ignored)
        self.bad_frame_note: str | None = None
        self.last_message = time.monotonic()
        self.versions = {k: 0 for k in ("model", "snapshot", "history", "warnings", "logs", "breakpoints",
                                        "state", "trace", "run", "data_view", "refused")}   # run: a restart went back to step 0
        self.wake = None                       # called (from the reader thread) on urgent changes
        self.trace = None                      # the latest step-into, kept until the next one
        self.trace_step: int | None = None
        self.data_view = None                  # the latest data view (snapshot.DataView), kept between them
        self.exit_code: int | None = None      # the training process's, if it ended unasked
        self.remote: dict | None = None        # attached to a served run: {"control", "rank", "world", "address"}

    def _bump(self, *keys) -> None:
        for k in keys:
            self.versions[k] += 1

    def apply(self, frame) -> None:
        """One frame from `decode` (typed and cleaned). A snapshot and a history are used as
        they are; the other frames, small, as plain dicts."""
        kind = type(frame).__struct_config__.tag
        message = frame if kind in ("snapshot", "history") else msgspec.to_builtins(frame)
        urgent = False
        with self.lock:
            self.last_message = time.monotonic()
            if kind == "snapshot":
                snapshot = frame.snapshot
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
                if snapshot.data_view is not None:
                    self.data_view = snapshot.data_view
                    self._bump("data_view")
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
                self.history = wire.history_arrays(frame.series)
                self._bump("history")
            elif kind == "state":
                self.state, self.stop = message["state"], message["stop"]
                self._bump("state")
                urgent = True
                if self.stop and self.stop.get("reason") == "error":   # where the eye is: the warnings too
                    self._add_event(self.stop["step"], "error", self.stop["detail"])
            elif kind == "loading":
                self.loading = message["path"]
                if self.state == "starting":
                    self.state = "loading"
                self._bump("state")
            elif kind == "hello":
                self.model = message["model"]
                self.loading = None
                if self.state == "loading":
                    self.state = "starting"
                self._bump("model", "state")
            elif kind == "log":
                self._log(message["stream"], message["text"])
            elif kind == "breakpoints":
                self.breakpoints = message["items"]
                self.breakpoint_error = message.get("error")
                self._bump("breakpoints")
            elif kind == "refused":
                self._refuse(message["message"])
            elif kind == "error":
                step = self.snapshot.step if self.snapshot else 0
                if message.get("kind") == "internal":
                    self.internal_error = message["message"]
                    self.stop = {"step": step, "reason": "internal error", "detail": message["message"]}
                else:   # the model file or the command line: nothing could start
                    self.error = message["message"]
                    self.stop = {"step": step, "reason": "error", "detail": message["message"]}
                self.state = "stopped"
                self._add_event(step, "error", message["message"])
                self._bump("state")
                urgent = True
            elif kind == "restarted":
                # a new run of the same model file: what was shown of the old one goes (the
                # model's output stays, with a line saying where the new run begins)
                self.snapshot, self.first_histograms, self.history = None, None, {}
                self.warnings.clear()
                self.trace = self.trace_step = self.stop = self.refused = self.data_view = None
                self._log("calcml", f"restarted from step 0 (seed {message['seed']}), keeping {message['kept']}\n")
                self._bump("run", "snapshot", "history", "warnings", "trace", "state", "data_view")
                urgent = True
            elif kind == "attached":
                # a served run, sent afresh (on attaching, or after falling behind): what was
                # shown goes, the run so far follows
                self.remote = message
                self.snapshot, self.first_histograms, self.history = None, None, {}
                self.warnings.clear()
                self.trace = self.trace_step = self.stop = self.refused = self.data_view = None
                self._bump("run", "snapshot", "history", "warnings", "trace", "state", "data_view", "model")
            elif kind == "quitting":
                self.quitting.set()
            elif kind == "report":
                self.report = {"path": message["path"], "ok": message["ok"], "message": message.get("message")}
            elif kind == "bye":
                self.bye = True
        if urgent and self.wake is not None:
            self.wake()  # a change a person is waiting to see: don't wait for the next poll

    def refuse(self, message: str) -> None:
        """A command that was not done, and why (the app shows it, and it is in the output)."""
        with self.lock:
            self._refuse(message)

    def _refuse(self, message: str) -> None:
        self.refused = message
        self._log("calcml", message + "\n")
        self._bump("refused")

    def _add_event(self, step: int, kind: str, message: str) -> None:
        """A line in the warnings pane for what ended the run (an error is not a warning
        condition, but it is what a person must see)."""
        from calcml.debug.diagnostics import WarningEvent
        self.warnings.append(WarningEvent(step, kind, None, None, float("nan"), float("nan"), message))
        self.warnings_total += 1
        self._bump("warnings")

    def bad_frame(self, reason: str, raw: bytes) -> None:
        """A message that failed validation: ignored, counted, shown; the first one's details
        go to a crash file (mode 0600)."""
        with self.lock:
            self.bad_frames += 1
            first = self.bad_frames == 1
        if first:
            from calcml.debug.crash import write_crash_file
            head = raw[:2000].decode("utf-8", "replace")
            path = write_crash_file(text=f"calcml-debug ignored a malformed message from the training "
                                         f"process: {reason}\n{len(raw)} bytes, starting:\n{head!r}")
            with self.lock:
                self.bad_frame_note = f"ignored a malformed message from the training process ({clean(reason)}); details in {path}"
        with self.lock:
            self._log("calcml", f"{self.bad_frame_note} [{self.bad_frames} so far]\n")
            self._bump("state")

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
        text = clean(text)
        with self.lock:
            self._log(stream, text)

    def disconnected(self, detail: str) -> None:
        """A served run's connection ended. After its bye (the run ended) nothing changes;
        otherwise everything stays on screen, with what happened."""
        with self.lock:
            if self.bye:
                return
            step = self.snapshot.step if self.snapshot else 0
            self.state = "stopped"
            self.stop = {"step": step, "reason": "disconnected", "detail": f"{detail} at step {step}"}
            self._add_event(step, "disconnected", self.stop["detail"])
            self._bump("state")

    def ended(self, code: int) -> None:
        """The training process is gone. Asked to (it said bye), nothing changes; otherwise
        (the model called os._exit, a crash, a kill) keep everything and say how and when."""
        with self.lock:
            if self.bye:
                return
            step = self.snapshot.step if self.snapshot else 0
            if code < 0:
                try:
                    how = f"was killed by {signal.Signals(-code).name}"
                except ValueError:
                    how = f"was killed by signal {-code}"
            else:
                how = f"exited with status {code}"
            where = f"while loading {self.loading}" if self.loading else f"at step {step}"
            self.exit_code = code
            if self.state not in ("finished", "stopped") or self.stop is None:
                self.state = "stopped"
                self.stop = {"step": step, "reason": "exited", "detail": f"the training process {how} {where}"}
                self._add_event(step, "exited", self.stop["detail"])
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

    def request_quit(self) -> None:
        """Ask the training side to end (without waiting: close() waits)."""
        self.command(commands.Quit())

    def poll(self) -> None:
        """Called by the app's timer; a backend that needs driving does a little work here."""

    def command(self, command: commands.Command) -> None:
        self.send(commands.to_dict(command))

    # conveniences
    def run(self):
        self.command(commands.Run())

    def pause(self):
        self.command(commands.Pause())

    def step(self, n: int = 1):
        self.command(commands.Step(n))

    def step_into(self):
        self.command(commands.StepInto())

    def train_on(self, n: int):
        self.command(commands.TrainOn(n))

    def restart(self):
        self.command(commands.Restart())

    def set_lr(self, lr: float):
        self.command(commands.SetLr(lr))

    def scale_lr(self, factor: float):
        self.command(commands.ScaleLr(factor))

    def set_regularizer(self, kind: str, lam: float | None = None):
        self.command(commands.SetRegularizer(kind, lam))

    def add_breakpoint(self, text: str):
        self.command(commands.AddBreakpoint(text))

    def remove_breakpoint(self, bp_id: int):
        self.command(commands.RemoveBreakpoint(bp_id))

    def stop(self):
        self.command(commands.Stop())


class ProcessBackend(Backend):
    """Trains in a child process (calcml.debug.worker): a hung or crashing model can be killed
    without touching the interface, and plots never compete with training for the GIL.

    The protocol has a pipe each way of its own (not the child's stdin/stdout); the child's
    stdout and stderr are the model's output. Every path is made absolute here, before any
    model code runs, so a model that changes its working folder moves nothing."""

    QUIT_GRACE = 2.0        # seconds for the worker to answer a quit (it does even while a step hangs)
    REPORT_TIMEOUT = 120.0  # seconds for it to write the report and end, once it has answered

    def __init__(self, model_path: str, seed: int | None = None, steps: int | None = None,
                 breakpoints=(), run: bool = True, json_path: str | None = None,
                 curvature_every: int | None = None, script_args: list | None = None, record: str | None = None):
        """`script_args`: the file is a training script, run with these arguments (None: a model file)."""
        super().__init__()
        self.model_path = os.path.abspath(model_path)
        self.json_path = os.path.abspath(json_path) if json_path else None
        options = []
        if seed is not None:
            options += ["--seed", str(seed)]
        if steps is not None:
            options += ["--steps", str(steps)]
        for text in breakpoints:
            options += ["--break", text]
        if run:
            options.append("--run")
        if self.json_path:
            options += ["--json", self.json_path]
        if curvature_every is not None:
            options += ["--curvature-every", str(curvature_every)]
        if record:
            options += ["--record", os.path.abspath(record)]
        if script_args is not None:
            options.append("--script")
        self.options = options
        self.script_args = list(script_args or [])
        self.process: subprocess.Popen | None = None
        self._commands = None
        self._write_lock = threading.Lock()

    def start(self) -> None:
        from calcml.debug.worker import BOOT
        env = dict(os.environ)
        # BLAS threads that wait for a core the interface is using stall every matrix product:
        # leave the interface a core (unless the user chose the thread counts).
        threads = str(max(1, (os.cpu_count() or 2) - 1))
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, threads)
        messages_r, messages_w = os.pipe()
        commands_r, commands_w = os.pipe()
        args = [sys.executable, "-c", BOOT, "--protocol-out", str(messages_w), "--protocol-in", str(commands_r),
                "--parent", str(os.getpid()), *self.options, "--", self.model_path, *self.script_args]
        # Started from the thread that lives as long as the interface: on Linux the worker is
        # told to end when this thread does (PR_SET_PDEATHSIG).
        try:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, env=env, start_new_session=True,
                                            pass_fds=(messages_w, commands_r))
        finally:
            os.close(messages_w)
            os.close(commands_r)
        self._commands = os.fdopen(commands_w, "wb", buffering=0)
        messages = os.fdopen(messages_r, "rb")
        threading.Thread(target=self._read_messages, args=(messages,), daemon=True, name="calcml-reader").start()
        for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            threading.Thread(target=self._read_output, args=(name, stream), daemon=True,
                             name=f"calcml-{name}").start()

    def _read_messages(self, stream) -> None:
        read_frames(stream, self.state)
        stream.close()
        self.state.ended(self.process.wait())

    def _read_output(self, name: str, stream) -> None:
        """The model's stdout or stderr, a line at a time (what one print() wrote, however many
        writes it took); a partial line shows after OUTPUT_FLUSH seconds without the rest."""
        fd, pending = stream.fileno(), b""
        while True:
            if pending and not select.select([fd], [], [], OUTPUT_FLUSH)[0]:
                self.state.log(name, pending.decode("utf-8", "replace"))
                pending = b""
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self.state.log(name, line.decode("utf-8", "replace") + "\n")
            if len(pending) > 65536:
                self.state.log(name, pending.decode("utf-8", "replace"))
                pending = b""
        if pending:
            self.state.log(name, pending.decode("utf-8", "replace"))
        stream.close()

    def send(self, command: dict) -> None:
        if self.process is None or self.process.poll() is not None or self._commands is None:
            return
        data = wire.encode(command) + b"\n"
        with self._write_lock:
            try:
                self._commands.write(data)
            except (OSError, ValueError):
                pass

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        """Ask the worker to quit and wait while it writes the report; kill it only if it does
        not answer (its main thread and its watchdog both stuck). Safe to call twice."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self.command(commands.Quit())
            answered = self.state.quitting.wait(self.QUIT_GRACE)
            try:
                process.wait(self.REPORT_TIMEOUT if answered else 0.5)
            except subprocess.TimeoutExpired:
                process.kill()
                try:
                    process.wait(5.0)
                except subprocess.TimeoutExpired:
                    pass
        if self.json_path:   # a worker killed while writing leaves its temporary file: not a report
            from calcml.debug.report import temporary_path
            try:
                os.unlink(temporary_path(self.json_path, process.pid))
            except OSError:
                pass
        with self._write_lock:
            if self._commands is not None:
                try:
                    self._commands.close()
                except OSError:
                    pass
                self._commands = None


class LocalBackend(Backend):
    """An in-process session driven by `pump()`: deterministic, for tests and recorded runs.

    Messages still go through the wire's codec, so what the app sees is what a worker sends.
    """

    def __init__(self, session, auto_ticks: int = 0, rebuild=None):
        """`rebuild(seed)`: a new session over the same model file, for a restart (None: none)."""
        super().__init__()
        from calcml.debug.worker import Worker

        self.session = session
        self.auto_ticks = auto_ticks     # ticks per poll() (0: only pump() trains)
        self._worker = Worker(session, _LocalChannel(self.state))
        self._worker.rebuild = rebuild
        self.state.apply(decode(wire.encode(self._worker.hello())))
        first = session.initial_snapshot()
        self._worker._sent = first
        self.state.apply(decode(wire.encode({"type": "snapshot", "snapshot": first})))
        self._worker.send_breakpoints()

    def send(self, command: dict) -> None:
        self._worker.handle(command)

    def pump(self, ticks: int = 1) -> None:
        """Run up to `ticks` session ticks and publish everything (no coalescing)."""
        for _ in range(ticks):
            snapshot = self._worker.tick()
            self.session = self._worker.session   # (a new one after a restart)
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
        self.state.apply(decode(wire.encode(message)))
