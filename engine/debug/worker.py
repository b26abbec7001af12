"""The training side of the interface: runs a Session in its own process, speaking JSON lines.

    python -c BOOT --protocol-out FD --protocol-in FD [--parent PID] [--seed S] [--steps N]
                   [--break SPEC ...] [--run] [--json FILE] -- MODEL.py

(`BOOT` below starts it with the current folder off `sys.path`, so a `numpy.py` or `calcml.py`
lying where the user stands is never imported in place of the real one.)

The protocol has its own pipes, apart from the process's standard streams: commands arrive on
`--protocol-in`, one JSON object per line ({"cmd": "pause"}, {"cmd": "step", "n": 1}, ...),
validated before use; messages leave on `--protocol-out`: loading, hello, snapshot, history,
breakpoints, state, refused, error, quitting, report, bye. Whatever the model prints goes to
the process's own stdout and stderr, which the front end shows as the model's output, so
nothing the model writes can pass for a message. Snapshots are coalesced to about
`PUBLISH_HZ` a second (every warning is still sent), history a few times a second: the front end
never receives one message per training step.

However the run ends (quit, the front end going away, a signal), the report (`--json`) is
written whole by `Shutdown`, from the training thread at the step boundary or, when a model
step hangs, from a watchdog thread after `QUIT_GRACE` seconds.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from msgspec.structs import replace

from . import commands, wire
from .allocator import keep_freed_memory
from .breakpoints import BreakpointError
from .loader import ModelFileError, load_model_file
from .session import Session, StopInfo, session_config

PUBLISH_HZ = 20
HISTORY_HZ = 2
QUIT_GRACE = 1.0   # seconds a quit waits for the step running to finish before the watchdog ends it
_exit = os._exit   # the real one (a model's own call to it is wrapped, below)
BOOT = ("import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
        "from calcml.debug.worker import main; sys.exit(main(sys.argv[1:]))")


class _Channel:
    """Thread-safe writer of frames (wire.encode, a line each) to the front end. When the front
    end has gone, sends become no-ops and `on_broken` is called once (the run is then ended, its report written).

    `stream` may be None (a served run with no interface of its own). Each frame is encoded
    once, and also handed, as (message, bytes without the newline), to every tap: the viewers
    of a served run (serve.Server.publish) and a recording (recording.Recorder.write). A tap
    never blocks and never raises into the training."""

    def __init__(self, stream, on_broken=None, taps=()):
        self._stream = stream
        self._lock = threading.Lock()
        self._owner = os.getpid()
        self.broken = False
        self.on_broken = on_broken
        self.taps = list(taps)

    def send(self, message: dict) -> None:
        if os.getpid() != self._owner:   # a forked copy of the worker says nothing
            return
        if self.broken and not self.taps:
            return
        data = wire.encode(message)
        with self._lock:
            for tap in self.taps:
                tap(message, data)
            if self._stream is None or self.broken:
                return
            try:
                self._stream.write(data + b"\n")
                self._stream.flush()
                return
            except (OSError, ValueError):
                self.broken = True
        if self.on_broken is not None:
            self.on_broken("the interface went away")


def model_info(session: Session) -> dict:
    spec, backend = session.spec, session.backend
    return {"path": spec.path, "name": spec.name, "description": spec.description, "seed": spec.seed,
            "steps": session.max_steps, "optimizer": backend.optimizer_name,
            "layers": [{"name": layer.name, "type": layer.type} for layer in session.layer_info],
            "params": [{"name": p.name, "shape": list(p.shape)} for p in session.params],
            "curvature_every": session.curvature_every, "curvature_note": session.curvature_note,
            "bayes_layers": list(backend.bayes_layers), "sampler": backend.sampler,
            "noise_every": session.config.noise_every, "noise_samples": session.config.noise_samples,
            "bayes_note": session.bayes_note, "restartable": False}   # (a worker that can restart says so)


def _notes(session: Session) -> tuple:
    """What model_info says about measurements that a failure can turn off mid-run."""
    return (session.curvature_every, session.curvature_note, session.config.noise_every, session.bayes_note)


class Worker:
    def __init__(self, session: Session, channel: _Channel):
        self.session = session
        session.may_pause = True   # a person can pause it after any step: each is measured at rest then
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
        self._data_view = None
        self._latest_extras = (None, None)   # the last histograms and data view sent (for catch_up)
        self.recorder = None          # a recording (recording.Recorder): given every step, not the coalesced
        self._recorded = None
        self._urgent = 0
        self._curvature = _notes(session)
        self._publishing = threading.Lock()   # the training thread, or the flusher while a step hangs
        self._last_tick = time.monotonic()
        # A model file can start again (restart): `rebuild(seed)` gives a new session over it,
        # loaded again with that seed; None for a training script, whose loop is its own.
        self.rebuild = None
        self.on_restart = None        # called with the new session (the report then covers it)
        self._restart = False

    def hello(self) -> dict:
        info = model_info(self.session)
        info["restartable"] = self.rebuild is not None
        return {"type": "hello", "model": info}

    def handle(self, command: dict) -> None:
        s = self.session
        name = command.get("cmd")
        # The person who sent it is waiting to see its effect: publish the next two steps at once
        # (the step already running when the command came still used the old settings).
        self._urgent = 2
        try:
            command = commands.from_dict(command)
            if isinstance(command, commands.AddBreakpoint):
                s.add_breakpoint(command.text)
                self.send_breakpoints()
            elif isinstance(command, commands.RemoveBreakpoint):
                s.remove_breakpoint(command.id)
                self.send_breakpoints()
            elif isinstance(command, commands.Quit):   # (from the pipe, the command reader ends the run itself)
                self.quit.set()
            elif isinstance(command, commands.Restart):
                if self.rebuild is None:
                    raise ValueError("a training script runs its own loop, so it cannot be restarted from "
                                     "here: quit and run it again")
                self._restart = True   # done by the training thread, between steps
            else:
                s.submit(command)
        except (BreakpointError, ValueError, KeyError, TypeError) as error:
            self.send_breakpoints(error=str(error)) if name == "break_add" else \
                self.channel.send({"type": "refused", "cmd": name, "message": str(error)})
        self.wake.set()

    def send_breakpoints(self, error: str | None = None) -> None:
        items = [{"id": b.id, "text": b.text, "describe": b.describe()} for b in self.session.breakpoints]
        self.channel.send({"type": "breakpoints", "items": items, "error": error})

    def publish(self, snapshot, force: bool = False, timeout: float = -1) -> None:
        """Send the latest snapshot (at most PUBLISH_HZ a second unless something needs showing now),
        every warning since the last one, the state when it changed, and the history now and then."""
        if not self._publishing.acquire(timeout=timeout):
            return
        try:
            self._publish(snapshot, force)
        finally:
            self._publishing.release()

    def observed(self, snapshot) -> None:
        """A step the user's own loop took (a training script): published as a driven one is."""
        self._last_tick = time.monotonic()
        self.publish(snapshot)

    def flush_while_busy(self) -> None:
        """Runs in its own thread: when a step takes long (or hangs), what the steps before it
        measured is still sent, instead of waiting, held back by coalescing, for the step to end."""
        period = 1.0 / PUBLISH_HZ
        while not self.quit.wait(period):
            s = self.session
            if time.monotonic() - self._last_tick > period and (
                    s.snapshot is not self._sent or (s.state, s.stop_info) != self._state):
                self.publish(None, force=True, timeout=period)

    def _publish(self, snapshot, force: bool) -> None:
        now = time.monotonic()
        s = self.session
        if snapshot is not None:
            self._events.extend(snapshot.warnings)
            if snapshot.histograms is not None:
                self._histograms = snapshot.histograms
            if snapshot.data_view is not None:
                self._data_view = snapshot.data_view
        latest = s.snapshot
        if self.recorder is not None:
            if snapshot is not None:
                self.recorder.step(snapshot)
            elif latest is not None and latest is not self._recorded and latest.step > 0:
                # measured again at rest (a pause, the end): the same step, its warnings recorded already
                self.recorder.step(replace(latest, warnings=()))
            self._recorded = latest
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
                latest = replace(latest, histograms=self._histograms)
            if latest.data_view is None and self._data_view is not None:   # (and the data view)
                latest = replace(latest, data_view=self._data_view)
            self._latest_extras = (latest.histograms or self._latest_extras[0],
                                   latest.data_view or self._latest_extras[1])
            # every event since the last message, so that none is lost with the skipped snapshots
            self.channel.send({"type": "snapshot", "snapshot": replace(latest, warnings=tuple(self._events))})
            self._events, self._sent, self._last_publish, self._histograms = [], sent, now, None
            self._data_view = None
        if _notes(s) != self._curvature:
            # a failed measurement turned curvature or gradient noise off: the front end learns why
            # from the model info
            self._curvature = _notes(s)
            self.channel.send(self.hello())
        if (s.state, s.stop_info) != self._state:
            self._state = (s.state, s.stop_info)
            self.channel.send({"type": "state", "state": s.state, "stop": s.stop_info})
        if s.step_count != self._history_step and (urgent or now - self._last_history >= 1.0 / HISTORY_HZ):
            self.channel.send({"type": "history", "series": wire.history_to_wire(s.history)})
            self._history_step, self._last_history = s.step_count, now

    def catch_up(self, then=None) -> list:
        """The run so far, as the frames a viewer that comes in now needs (after its `attached`
        frame): the model, the latest snapshot carrying every warning kept so far and the
        latest histograms and data view, the breakpoints, the state and the history. Safe from
        any thread: taken under the publishing lock, so it is one moment of the run; `then` is
        called under it too (a viewer drops what it had queued: the catch-up holds it)."""
        with self._publishing:
            if then is not None:
                then()
            s = self.session
            frames = [self.hello()]
            latest = self._sent if self._sent is not None else s.snapshot
            if latest is not None:
                histograms, data_view = self._latest_extras
                latest = replace(latest, warnings=tuple(s.warnings),
                                 histograms=latest.histograms or histograms,
                                 data_view=latest.data_view or data_view)
                frames.append({"type": "snapshot", "snapshot": latest})
            frames.append({"type": "breakpoints", "items": [
                {"id": b.id, "text": b.text, "describe": b.describe()} for b in s.breakpoints], "error": None})
            frames.append({"type": "state", "state": s.state, "stop": s.stop_info})
            frames.append({"type": "history", "series": wire.history_to_wire(s.history)})
            return frames

    def tick(self):
        """One session tick (a restart asked for first): its snapshot, or None."""
        if self._restart:
            self.restart()
        return self.session.tick()

    def restart(self) -> None:
        """Back to step 0, on the training thread: a new session over the model file, loaded again
        with the run's seed, paused, keeping what the person chose; the front end is told and sent
        the new run's model, first snapshot, breakpoints and (empty) history."""
        self._restart = False
        old = self.session
        old.apply_commands()   # what was sent before the restart (an lr) is part of what it keeps
        try:
            new = self.rebuild(old.spec.seed)
        except ModelFileError as error:
            self.channel.send({"type": "refused", "cmd": "restart", "message": f"restart failed: {error}"})
            return
        kept = new.keep_settings_of(old)
        with self._publishing:
            self.session = new
            new.may_pause = True
            self._events, self._histograms, self._data_view, self._urgent = [], None, None, 0
            self._latest_extras = (None, None)
            self._curvature = _notes(new)
            if self.on_restart is not None:
                self.on_restart(new)
            self.channel.send({"type": "restarted", "seed": new.spec.seed, "kept": kept})
            self.channel.send(self.hello())
            self._sent = new.initial_snapshot()
            self.channel.send({"type": "snapshot", "snapshot": self._sent})
            self.send_breakpoints()
            self._state = (new.state, new.stop_info)
            self.channel.send({"type": "state", "state": new.state, "stop": None})
            self.channel.send({"type": "history", "series": wire.history_to_wire(new.history)})
            self._history_step = 0

    def loop(self) -> None:
        threading.Thread(target=self.flush_while_busy, daemon=True, name="calcml-flush").start()
        while not self.quit.is_set():
            self._last_tick = time.monotonic()
            snapshot = self.tick()
            self._last_tick = time.monotonic()
            if snapshot is not None:
                self.publish(snapshot)
                continue
            self.publish(None, force=True)  # idle: flush what coalescing held back
            self.wake.wait(0.1)
            self.wake.clear()


class Shutdown:
    """Ends the run once, however the end comes: the report written whole (if asked for), then
    `report` and `bye` sent.

    `request(why)` may come from any thread or a signal handler, so it only writes a byte to a
    pipe; a watchdog thread wakes on it, tells the front end the worker is quitting, stops the
    training loop and waits `grace` seconds for the training thread to finish (`finish`). If a
    model step hangs, the watchdog writes the report itself from what the finished steps
    recorded and ends the process."""

    def __init__(self, channel: _Channel, json_path: str | None, grace: float = QUIT_GRACE):
        self.channel, self.json_path, self.grace = channel, json_path, grace
        self.session: Session | None = None
        self.worker: Worker | None = None
        self.recorder = None       # a recording of the run (--record), closed after the bye
        self.why: str | None = None
        self._lock = threading.Lock()
        self._done = False
        self._finished = threading.Event()
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        threading.Thread(target=self._watch, daemon=True, name="calcml-shutdown").start()

    def request(self, why: str) -> None:
        if self.why is None:
            self.why = why
        try:
            os.write(self._w, b"x")
        except OSError:   # already woken
            pass

    def _watch(self) -> None:
        os.read(self._r, 1)
        self.channel.send({"type": "quitting"})
        worker = self.worker
        if worker is not None:
            worker.quit.set()
            worker.wake.set()
        if self._finished.wait(self.grace):
            return
        session = self.session
        running = session.step_count + 1 if session is not None else None
        self.finish(hung=running)
        _exit(0)

    def finish(self, hung: int | None = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            session = self.session
            if session is not None and self.json_path:
                self._write_report(session, hung)
            self.channel.send({"type": "bye"})
            if self.recorder is not None:
                self.recorder.close()
        self._finished.set()

    def _write_report(self, session: Session, hung: int | None) -> None:
        from .report import write_report
        why = self.why or "the interface quit"
        detail = f"{why} at step {session.step_count}"
        if hung is not None:
            detail += f", while step {hung} was still running (it had not finished after {self.grace:g} s)"
        try:
            write_report(session, self.json_path, stopped=StopInfo(session.step_count, "user", detail))
        except OSError as error:
            self.channel.send({"type": "report", "path": self.json_path, "ok": False,
                               "message": f"{type(error).__name__}: {error}"})
            return
        self.channel.send({"type": "report", "path": self.json_path, "ok": True, "message": None})


class CommandReader:
    """Reads the front end's commands (one JSON line each, at most wire.MAX_COMMAND_BYTES) and
    hands each valid one to the worker; a malformed one is refused with the reason and never
    ends the reader. Commands that come before the model has loaded wait for it (quit does not).
    The pipe closing means the front end has gone: the run ends."""

    def __init__(self, stream, shutdown: Shutdown):
        self.stream, self.shutdown = stream, shutdown
        self._lock = threading.Lock()
        self._waiting: list = []
        self._worker: Worker | None = None

    def attach(self, worker: Worker) -> None:
        with self._lock:
            self._worker = worker
            waiting, self._waiting = self._waiting, []
        for command in waiting:
            worker.handle(command)

    def run(self) -> None:
        limit = wire.MAX_COMMAND_BYTES
        while True:
            line = self.stream.readline(limit + 1)
            if not line:
                break
            if len(line) > limit and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):   # skip the rest of an oversized line
                    line = self.stream.readline(limit + 1)
                self._refuse(None, f"a command longer than {limit} bytes was ignored")
                continue
            if not line.strip():
                continue
            try:
                command = wire.decode_command(line)
            except wire.FrameError as error:
                self._refuse(None, f"a malformed command was ignored: {error}")
                continue
            if command["cmd"] == "quit":
                self.shutdown.request("the interface quit")
                continue
            with self._lock:
                worker = self._worker
                if worker is None:
                    self._waiting.append(command)
                    continue
            worker.handle(command)
        self.shutdown.request("the interface closed its pipe")

    def _refuse(self, name, message: str) -> None:
        self.shutdown.channel.send({"type": "refused", "cmd": name, "message": message})


def _die_with_parent(parent: int | None) -> None:
    """End this process when the front end does, however it ends: on Linux the kernel sends
    SIGTERM (handled as a quit: the report is written) when the parent dies; everywhere, the
    command pipe closing does the same (CommandReader)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent is not None and os.getppid() != parent:   # it died before the line above
        _exit(0)


def _flush_before_exit(worker: Worker) -> None:
    """A model that calls os._exit() ends this process, as it asked; the front end first gets
    the steps finished before it, so it can say at which step the process ended."""
    real_exit, owner = _exit, os.getpid()

    def exit_after_flush(code):
        if os.getpid() == owner:
            try:
                worker.publish(None, force=True, timeout=0.5)
            except Exception:
                pass
        real_exit(code)

    os._exit = exit_after_flush


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="calcml.debug.worker")
    parser.add_argument("model")
    parser.add_argument("script_args", nargs="*", help="a training script's own arguments")
    parser.add_argument("--script", action="store_true", help="the file is a training script with its own loop")
    parser.add_argument("--protocol-out", type=int, required=True, help="file descriptor for messages")
    parser.add_argument("--protocol-in", type=int, required=True, help="file descriptor for commands")
    parser.add_argument("--parent", type=int, help="the front end's process id")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--break", dest="breaks", action="append", default=[])
    parser.add_argument("--run", action="store_true", help="start training at once")
    parser.add_argument("--json", help="write the run report here when the run ends")
    parser.add_argument("--curvature-every", type=int, help="steps between curvature measurements (0: off)")
    parser.add_argument("--record", help="also write every frame sent to this recording file")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    keep_freed_memory()   # no page faults for the arrays each step frees and takes again
    for stream in (sys.stdout, sys.stderr):   # the model's prints reach the front end a line at a time
        stream.reconfigure(line_buffering=True)

    shutdown = Shutdown(None, args.json)
    channel = _Channel(os.fdopen(args.protocol_out, "wb", buffering=0), on_broken=shutdown.request)
    shutdown.channel = channel
    recorder = None
    if args.record:
        from .recording import Recorder
        try:
            recorder = Recorder(args.record)
            channel.taps.append(recorder.write)
            shutdown.recorder = recorder
        except OSError as error:
            channel.send({"type": "log", "stream": "calcml",
                          "text": f"calcml: cannot record to {args.record}: {error.strerror or error}\n"})
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, lambda n, frame: shutdown.request(f"{signal.Signals(n).name} to the training process"))
    reader = CommandReader(os.fdopen(args.protocol_in, "rb"), shutdown)
    threading.Thread(target=reader.run, daemon=True, name="calcml-commands").start()
    try:
        return _serve(args, channel, shutdown, reader)
    except Exception as error:   # calcml's own failure: a note for the front end, the details in a file
        from .crash import write_crash_file
        path = write_crash_file(error)
        channel.send({"type": "error", "kind": "internal",
                      "message": f"internal error in the training process: {type(error).__name__}: {error}. "
                                 f"This is a bug in calcml, not in your model. The details are in {path}."})
        shutdown.finish()
        return 1


def _serve(args, channel: _Channel, shutdown: Shutdown, reader: CommandReader) -> int:
    if args.script:
        return _serve_script(args, channel, shutdown, reader)
    channel.send({"type": "loading", "path": args.model})
    try:
        spec = load_model_file(args.model, seed=args.seed, steps=args.steps)
    except ModelFileError as error:
        channel.send({"type": "error", "kind": "model_file", "message": str(error)})
        shutdown.finish()
        return 2
    session = Session(spec, session_config(args.curvature_every))
    if not _add_breakpoints(session, args.breaks, channel):
        shutdown.finish()
        return 2
    worker = _start_worker(session, channel, shutdown, rebuild=lambda seed: Session(
        load_model_file(args.model, seed=seed, steps=args.steps), session_config(args.curvature_every)))
    if shutdown.why is not None:   # quit while loading
        shutdown.finish()
        return 0
    if args.run:
        session.run()
    reader.attach(worker)
    worker.loop()
    shutdown.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _add_breakpoints(session: Session, texts: list, channel: _Channel) -> bool:
    """The command line's breakpoints; False (the front end told why) if one is refused."""
    for text in texts:
        try:
            session.add_breakpoint(text)
        except BreakpointError as error:
            channel.send({"type": "error", "kind": "usage", "message": f"breakpoint refused: {error}"})
            return False
    return True


def _start_worker(session: Session, channel: _Channel, shutdown: Shutdown, rebuild=None) -> Worker:
    """The worker for a session that has its model: the front end told what the model is and
    shown its first snapshot and the breakpoints."""
    worker = Worker(session, channel)
    worker.rebuild = rebuild
    worker.recorder = shutdown.recorder

    def restarted(new: Session) -> None:
        shutdown.session = new
    worker.on_restart = restarted
    channel.send(worker.hello())
    worker._sent = session.initial_snapshot()
    channel.send({"type": "snapshot", "snapshot": worker._sent})
    worker.send_breakpoints()
    shutdown.session, shutdown.worker = session, worker
    _flush_before_exit(worker)
    return worker


def _serve_script(args, channel: _Channel, shutdown: Shutdown, reader: CommandReader) -> int:
    """A training script with its own loop: it runs in this thread, and from its first optimiser
    step the session observes it; the interface's commands act at its optimiser steps. Once the
    run has ended (finished, stopped, or the interface quits) the script is held at its next
    optimiser step until the interface quits, and then ended there."""
    channel.send({"type": "loading", "path": args.model})
    try:
        from .script import Attach, EndScript, ScriptEnded, docstring, run_script
    except ImportError:
        channel.send({"type": "error", "kind": "model_file",
                      "message": f"{args.model}: this script uses PyTorch, which is not installed here. Install it "
                                 'with calcml\'s torch extra: pip install -e ".[torch]" (or pip install torch)'})
        shutdown.finish()
        return 2
    started: dict = {}

    def on_attach(watch) -> None:
        session = watch.session
        if not _add_breakpoints(session, args.breaks, channel):
            shutdown.request("a breakpoint was refused")
            raise EndScript()
        worker = _start_worker(session, channel, shutdown)
        watch.on_step = worker.observed
        watch.on_skip = lambda note: channel.send({"type": "log", "stream": "calcml", "text": f"calcml: {note}\n"})
        started["worker"] = worker
        threading.Thread(target=worker.flush_while_busy, daemon=True, name="calcml-flush").start()

        def stop_on_quit() -> None:   # a script held at a pause wakes to end
            worker.quit.wait()
            session.stop()
        threading.Thread(target=stop_on_quit, daemon=True, name="calcml-quit").start()
        if args.run:
            session.run()
        reader.attach(worker)

    def on_done() -> None:
        worker = started["worker"]
        worker.publish(None, force=True)
        worker.quit.wait()      # the run is over: held here for the person to look at it
        raise EndScript()

    attach = Attach(on_attach, steps=args.steps, config=session_config(args.curvature_every), on_done=on_done,
                    start_paused=not args.run, name=os.path.basename(args.model), path=args.model,
                    description=docstring(args.model))
    error = None
    try:
        run_script(args.model, args.script_args, attach)
    except ScriptEnded as ended:
        if not ended.trained:
            channel.send({"type": "error", "kind": "model_file", "message": ended.detail})
            shutdown.finish()
            return 2
        error = ended.detail
    worker = started.get("worker")
    if worker is None:   # quit before the first step
        shutdown.finish()
        return 0
    attach.watch.session.observed_run_ended(error)
    attach.watch.on_step = None
    attach.watch.detach()
    worker.loop()        # the script has ended: the run is shown until the interface quits
    shutdown.finish()
    return 0
