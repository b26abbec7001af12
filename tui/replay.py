"""A recorded run, browsed with the same screens: `calcml-debug --open run.calcml`.

`RecordingBackend` feeds the `DebugState` the app reads from a recording (calcml.debug.recording)
instead of a training process: at each recorded snapshot, the state is what a person watching
the run saw at that step (its warnings so far, the history up to it, the latest data view and
step-into). Nothing trains: n and space move through the recorded snapshots, p goes back, and
every command that would change the run is refused.
"""
from __future__ import annotations

import sys
import time
from collections import OrderedDict

import msgspec
import numpy as np

from calcml.debug import commands, wire
from calcml.debug.recording import Recording, RecordingError, read_recording

from .backend import Backend

REFUSED = "this is a recording: it shows what the run did and cannot change it"
PLAY_HZ = 10          # recorded snapshots a second while playing
_MOVES = ("step", "run", "pause", "quit")
_CACHE = 16           # decoded snapshots kept


class RecordingBackend(Backend):
    """The app's backend over a recording (a path, or a Recording already read). Starts at the
    last recorded snapshot; `seek(index)`, `back(n)` and the step / run / pause commands move
    through them. Raises RecordingError for a file that is not a recording."""

    replay = True

    def __init__(self, recording, clock=time.monotonic):
        super().__init__()
        self.recording: Recording = recording if isinstance(recording, Recording) else read_recording(recording)
        self.clock = clock
        self.index = -1
        self.playing = False
        self._last_poll = None
        self._credit = 0.0
        self._cache: OrderedDict = OrderedDict()
        self._history = (None, None)        # (history index, decoded arrays)
        self._shown: dict = {}              # what the state was last set from (to bump only changes)
        self._warnings_key = None
        self._index_tables()
        self._apply_notes()
        self.state.state = "paused"
        if self.recording.snapshots:
            self.seek(len(self.recording.snapshots) - 1)
        else:
            self._show_frames(0)

    # -- what is known per position ------------------------------------------------------------
    def _index_tables(self) -> None:
        rec = self.recording
        self._run_start = {}                 # run -> its first snapshot index
        self._cum = []                       # per snapshot: warnings in its run up to it
        self._events: dict = {}              # run -> its warnings in order
        for i, entry in enumerate(rec.snapshots):
            self._run_start.setdefault(entry.run, i)
            events = self._events.setdefault(entry.run, [])
            events.extend(entry.warnings)
            self._cum.append(len(events))
        self._final = ("paused", None)
        for _, frame in rec.frames:
            if isinstance(frame, wire.StateFrame):
                stop = None if frame.stop is None else {"step": frame.stop.step, "reason": frame.stop.reason,
                                                        "detail": frame.stop.detail}
                self._final = (frame.state if frame.state in ("finished", "stopped") else "paused", stop)
            elif isinstance(frame, wire.RestartedFrame):
                self._final = ("paused", None)

    def _apply_notes(self) -> None:
        """The run's output and notes, once: the Model output pane is the whole run's."""
        rec = self.recording
        for _, frame in rec.frames:
            if isinstance(frame, wire.LogFrame):
                self.state.log(frame.stream, frame.text)
            elif isinstance(frame, wire.RefusedFrame):
                self.state.log("calcml", f"(recorded) {frame.message}\n")
            elif isinstance(frame, wire.ErrorFrame):
                self.state.log("calcml", f"(recorded) error: {frame.message}\n")
            elif isinstance(frame, wire.RestartedFrame):
                self.state.log("calcml", f"(recorded) restarted from step 0 (seed {frame.seed}), keeping {frame.kept}\n")
            elif isinstance(frame, wire.ReportFrame):
                said = "written" if frame.ok else f"not written ({frame.message})"
                self.state.log("calcml", f"(recorded) the report was {said}: {frame.path}\n")
        last = rec.snapshots[-1].step if rec.snapshots else 0
        if rec.cut or not rec.ended:
            self.state.log("calcml", f"the recording ends at step {last}: it was cut off there "
                                     f"(the run crashed or was killed)\n")
        if rec.bad_lines:
            self.state.log("calcml", f"{rec.bad_lines} malformed line{'s' if rec.bad_lines > 1 else ''} of the "
                                     f"recording {'were' if rec.bad_lines > 1 else 'was'} ignored\n")

    def snapshot(self, index: int):
        """The recorded snapshot `index`, decoded (a few are kept)."""
        snap = self._cache.get(index)
        if snap is None:
            snap = self.recording.snapshot(index)
            self._cache[index] = snap
            if len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return snap

    def _latest(self, index: int, flag: str):
        """The latest snapshot at or before `index`, in its run, recorded with `flag` set."""
        entries, run = self.recording.snapshots, self.recording.snapshots[index].run
        for j in range(index, self._run_start[run] - 1, -1):
            if getattr(entries[j], flag):
                return j
        return None

    def _history_at(self, index: int):
        """The history to show at snapshot `index`: the first recorded in its run that reaches
        its step (the finest over the steps before it), else the run's latest; cut to that step."""
        entry = self.recording.snapshots[index]
        chosen = None
        for h, hist in enumerate(self.recording.histories):
            if hist.run != entry.run:
                continue
            chosen = h
            if hist.last_step >= entry.step:
                break
        if chosen is None:
            return None, {}
        if self._history[0] != chosen:
            self._history = (chosen, wire.history_arrays(self.recording.history(chosen)))
        series = self._history[1]
        steps = series.get("step")
        if steps is None:
            return chosen, series
        keep = int(np.searchsorted(steps, entry.step, side="right")) if len(steps) else 0
        return (chosen, keep), {k: v[:keep] for k, v in series.items()}

    # -- moving ---------------------------------------------------------------------------------
    def seek(self, index: int) -> None:
        """Show recorded snapshot `index` (clamped to the recording)."""
        count = len(self.recording.snapshots)
        if not count:
            return
        index = max(0, min(int(index), count - 1))
        if index == self.index:
            self._show_state()
            return
        backwards = index < self.index
        self.index = index
        self._show(index, backwards)

    def back(self, n: int = 1) -> None:
        """Back `n` recorded snapshots (and stop playing)."""
        self.playing = False
        self.seek(self.index - n)

    def forward(self, n: int = 1) -> None:
        self.seek(self.index + n)

    @property
    def at_end(self) -> bool:
        return self.index >= len(self.recording.snapshots) - 1

    def position_text(self) -> str:
        """Where the replay is, in words: "recorded step 120 (34 of 210)"."""
        count = len(self.recording.snapshots)
        if not count:
            return "the recording has no steps"
        return f"recorded step {self.recording.snapshots[self.index].step} ({self.index + 1} of {count})"

    def _show(self, index: int, backwards: bool) -> None:
        rec, state = self.recording, self.state
        entry = rec.snapshots[index]
        snap = self.snapshot(index)
        history_key, history = self._history_at(index)
        view_at = self._latest(index, "data_view")
        trace_at = self._latest(index, "trace")
        first_hist = self._latest_first(entry.run)
        with state.lock:
            bump = ["snapshot"]
            state.snapshot = snap
            if first_hist != self._shown.get("first_histograms"):
                self._shown["first_histograms"] = first_hist
                state.first_histograms = None if first_hist is None else self.snapshot(first_hist).histograms
            if history_key != self._shown.get("history"):
                self._shown["history"] = history_key
                state.history = history
                bump.append("history")
            if view_at != self._shown.get("data_view", -1):
                self._shown["data_view"] = view_at
                state.data_view = None if view_at is None else self.snapshot(view_at).data_view
                bump.append("data_view")
            if trace_at != self._shown.get("trace", -1):
                self._shown["trace"] = trace_at
                state.trace = None if trace_at is None else self.snapshot(trace_at).trace
                state.trace_step = None if trace_at is None else rec.snapshots[trace_at].step
                bump.append("trace")
            bump += self._show_warnings(index, entry.run, backwards)
            state._bump(*bump)
        self._show_frames(index)
        self._show_state()

    def _latest_first(self, run: int):
        start = self._run_start[run]
        for j in range(start, len(self.recording.snapshots)):
            entry = self.recording.snapshots[j]
            if entry.run != run:
                break
            if entry.histograms:
                return j
        return None

    def _show_warnings(self, index: int, run: int, backwards: bool) -> list:
        """The warnings recorded up to this snapshot. The warnings pane only appends, so going
        back (or into another run) starts it again as a restart does: "run" bumped (the pane
        cleared, a view opened afterwards built afresh), the count going on from where it was,
        so that every warning kept is new to it."""
        state = self.state
        count = self._cum[index]
        previous = self._warnings_key
        if previous == (run, count) and not backwards:
            return []
        events = self._events[run][:count]
        self._warnings_key = (run, count)
        if previous is not None and previous[0] == run and count >= previous[1] and not backwards:
            state.warnings.extend(events[previous[1]:])
            state.warnings_total += count - previous[1]
            return ["warnings"]
        state.warnings.clear()
        state.warnings.extend(events[-state.warnings.maxlen:])
        state.warnings_total += count
        return ["warnings", "run"] if previous is not None else ["warnings"]

    def _show_frames(self, index: int) -> None:
        """The model and breakpoints as they were at this snapshot."""
        hello = breakpoints = None
        for after, frame in self.recording.frames:
            if after > index + 1:
                break
            if isinstance(frame, wire.HelloFrame):
                hello = frame
            elif isinstance(frame, wire.BreakpointsFrame):
                breakpoints = frame
        if hello is None:   # (a hello always comes first; a recording cut early may have none)
            hello = next((f for _, f in self.recording.frames if isinstance(f, wire.HelloFrame)), None)
        state = self.state
        with state.lock:
            if hello is not None and hello is not self._shown.get("hello"):
                self._shown["hello"] = hello
                model = msgspec.to_builtins(hello.model)
                model["restartable"] = False   # nothing here can run again
                state.model = model
                state._bump("model")
            if breakpoints is not None and breakpoints is not self._shown.get("breakpoints"):
                self._shown["breakpoints"] = breakpoints
                state.breakpoints = msgspec.to_builtins(breakpoints.items)
                state.breakpoint_error = breakpoints.error
                state._bump("breakpoints")

    def _show_state(self) -> None:
        """Paused while browsing, running while playing; at the last snapshot, how the run ended."""
        state = self.state
        if self.playing and not self.at_end:
            name, stop = "running", None
        elif self.recording.snapshots and self.at_end:
            name, stop = self._final
        else:
            name, stop = "paused", None
        with state.lock:
            state.replay_position = f"replay {self.index + 1}/{len(self.recording.snapshots)}"
            if (name, stop) != (state.state, state.stop) or self._shown.get("position") != self.index:
                self._shown["position"] = self.index
                state.state, state.stop = name, stop
                state._bump("state")

    # -- commands ---------------------------------------------------------------------------------
    def send(self, command: dict) -> None:
        name = command.get("cmd")
        if name == "step":
            self.playing = False
            self.forward(max(1, int(command.get("n") or 1)))
        elif name == "run":
            if not self.at_end:
                self.playing, self._last_poll, self._credit = True, None, 0.0
                self._show_state()
        elif name == "pause":
            self.playing = False
            self._show_state()
        elif name == "quit":
            self.playing = False
        else:
            self.state.refuse(REFUSED)

    def request_quit(self) -> None:
        self.playing = False

    def command(self, command: commands.Command) -> None:
        self.send(commands.to_dict(command))

    def poll(self) -> None:
        """Playing: about PLAY_HZ recorded snapshots a second, at least one a poll."""
        if not self.playing:
            return
        now = self.clock()
        elapsed = 0.0 if self._last_poll is None else now - self._last_poll
        self._last_poll = now
        self._credit += PLAY_HZ * elapsed
        n = max(1, int(self._credit))
        self._credit = max(0.0, self._credit - n)
        self.forward(n)
        if self.at_end:
            self.playing = False
            self._show_state()

    def close(self) -> None:
        self.playing = False
        self.recording.close()


def run_replay(path: str) -> int:
    """`calcml-debug --open FILE`: browse a recording. 2 (and why, on stderr) when the file is
    not a recording that can be opened; 0 otherwise."""
    try:
        backend = RecordingBackend(path)
    except RecordingError as error:
        from calcml.debug.safetext import clean
        print(f"calcml-debug: {clean(str(error))}", file=sys.stderr)
        return 2
    from .app import DebuggerApp
    app = DebuggerApp(backend, live=True)
    try:
        result = app.run()
    finally:
        backend.close()
    if app.crash_path is not None:
        print(f"calcml-debug: internal error in the interface: {app.crash_error}\n"
              f"This is a bug in calcml. The details are in {app.crash_path}.", file=sys.stderr)
        return 1
    if app.signal is not None:
        return 128 + app.signal
    return result if isinstance(result, int) else 0
