"""`calcml-debug --headless`: train with a progress line, then print the per-layer table and warnings.

SIGINT, SIGTERM and SIGHUP stop the run at the next step boundary (a step that has not finished
`SIGNAL_GRACE` seconds later is cut short), the report is written, and the exit status is
128 + the signal's number.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from calcml.debug.report import write_report
from calcml.debug.safetext import clean

from .format import layer_rows, LAYER_HEADERS, num
from .widgets.status import rate_text

EXIT_OK, EXIT_USAGE = 0, 2
SIGNAL_GRACE = 1.0
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal cut a step short (a KeyboardInterrupt, so no model-error handler takes it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Guard:
    """While a headless run lasts: signals stop it cleanly, and os._exit() called by the model
    becomes a model error (SystemExit) instead of ending the process with nothing written.

    The first signal asks the session to stop at the next step boundary; if the step is still
    running SIGNAL_GRACE seconds later (a model that hangs), the signal is delivered again and
    then cuts the step short (Interrupted). Before the session exists, a signal interrupts at once."""

    def __init__(self):
        self.session = None
        self.signum: int | None = None
        self.finished = False
        self._saved: dict = {}
        self._exit = os._exit
        self._owner = os.getpid()

    def __enter__(self):
        for signum in SIGNALS:
            self._saved[signum] = signal.signal(signum, self._handle)
        real_exit, owner = self._exit, self._owner

        def model_exit(code):
            if os.getpid() != owner:   # a forked child ending itself, as multiprocessing's do
                real_exit(code)
            raise SystemExit(code)

        os._exit = model_exit
        return self

    def __exit__(self, *exc) -> None:
        os._exit = self._exit
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.finished:
            return
        first = self.signum is None
        if first:
            self.signum = signum
        if self.session is None or not first:
            raise Interrupted(self.signum)
        self.session.stop(f"stopped by {signal.Signals(signum).name}")
        main = threading.main_thread().ident

        def again():
            time.sleep(SIGNAL_GRACE)
            if not self.finished:
                signal.pthread_kill(main, signum)
        threading.Thread(target=again, daemon=True).start()

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None


class Progress:
    """One live line on a terminal (rewritten in place); a line a second elsewhere."""

    def __init__(self, stream, total):
        self.stream, self.total = stream, total
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, snapshot, force: bool = False) -> None:
        if snapshot.step == 0:  # nothing trained yet (the first step failed)
            return
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self.tty else 1.0):
            return
        self._last = now
        total = f"/{self.total}" if self.total else ""
        val = f"  val {num(snapshot.val_loss)}" if snapshot.val_loss is not None else ""
        line = (f"step {snapshot.step}{total}  epoch {snapshot.epoch}  loss {num(snapshot.loss)}{val}  "
                f"{rate_text(snapshot.steps_per_sec)} steps/s")
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _say_what(spec, out) -> None:
    """The model file and its description's first line."""
    print(f"calcml-debug: {clean(spec.path)}", file=out)
    if spec.description:
        print(clean(spec.description.splitlines()[0]), file=out)


def run_headless(session, json_path: str | None = None, out=None, guard: Guard | None = None) -> int:
    out = out or sys.stdout
    _say_what(session.spec, out)
    progress = Progress(out, session.max_steps)
    try:
        snapshot = session.run_to_end(on_step=progress)
    except Interrupted:   # a step that did not finish after a signal: it is not part of the run
        snapshot = session.snapshot
        session.stop_now(f"stopped by {guard.signal_name}, while step {session.step_count + 1} was still "
                         f"running (it had not finished {SIGNAL_GRACE:g} s after the signal)")
    if guard is not None:
        guard.finished = True
    session.stop_at_breakpoint()
    if snapshot is not None and snapshot.layers:
        progress(snapshot, force=True)
    progress.done()
    return _ended(session, out, json_path, guard)


def run_served(publisher, json_path: str | None = None, out=None, guard: Guard | None = None) -> int:
    """A headless run that is also published (served to viewers and/or recorded): the same
    progress and summary as run_headless; a breakpoint pauses it (a viewer with the token can
    continue it) instead of ending it; it ends when training ends, or on a viewer's stop."""
    out = out or sys.stdout
    worker = publisher.worker
    _say_what(worker.session.spec, out)
    print(publisher.attach_line(), file=out, flush=True)
    progress = Progress(out, worker.session.max_steps)
    threading.Thread(target=worker.flush_while_busy, daemon=True, name="calcml-flush").start()
    worker.session.run()
    told = None
    try:
        while not worker.quit.is_set():
            snapshot = worker.tick()
            session = worker.session
            if snapshot is not None:
                worker.publish(snapshot)
                progress(snapshot)
                continue
            if session.done:
                break
            if session.state == "paused" and session.snapshot is not None and session.snapshot.step != told:
                told = session.snapshot.step
                hit = session.snapshot.hit
                why = f" at breakpoint: {hit.why}" if hit is not None else ""
                progress(session.snapshot, force=True)
                progress.done()
                print(f"paused at step {told}{why}; a viewer with the token continues it (space, n or c)",
                      file=out, flush=True)
            worker.publish(None, force=True)
            worker.wake.wait(0.1)
            worker.wake.clear()
    except Interrupted:
        worker.session.stop_now(f"stopped by {guard.signal_name}, while step {worker.session.step_count + 1} was "
                                f"still running (it had not finished {SIGNAL_GRACE:g} s after the signal)")
    if guard is not None:
        guard.finished = True
    session = worker.session
    worker.quit.set()
    if session.snapshot is not None and session.snapshot.layers:
        progress(session.snapshot, force=True)
    progress.done()
    publisher.close()
    return _ended(session, out, json_path, guard)


def _ended(session, out, json_path: str | None, guard: Guard | None) -> int:
    """The summary and the report of a run that has ended, and its exit status."""
    print_summary(session, out)
    if json_path:
        write_report(session, json_path)
        print(f"report written to {json_path}", file=out)
    if guard is not None and guard.signum is not None:
        return 128 + guard.signum
    if session.stop_info is not None and session.stop_info.reason == "error":
        return EXIT_USAGE
    return EXIT_OK


def print_summary(session, out) -> None:
    snapshot = session.snapshot
    if snapshot is not None and snapshot.layers:
        rows = [LAYER_HEADERS] + [[clean(cell, keep_newlines=False) for cell in row]
                                  for row in layer_rows(snapshot.layers)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(LAYER_HEADERS))]
        print("", file=out)
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip(), file=out)
    events = list(session.warnings)
    print("", file=out)
    if events:
        print("warnings:", file=out)
        for w in events:
            tag = "cleared " if w.event == "clear" else ""
            print(f"  step {w.step:>6}  {tag}{w.kind:<19} {clean(w.message)}", file=out)
    else:
        print("no warnings", file=out)
    info = session.stop_info
    if info is not None:
        print(f"stopped at step {info.step} ({info.reason}):\n{clean(info.detail)}", file=out)
    else:
        state = "finished" if session.state == "finished" else f"paused at step {session.step_count}"
        print(f"{state} after {session.step_count} steps", file=out)
