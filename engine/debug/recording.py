"""A run written to a file as it trains, to be browsed afterwards (`calcml-debug --open FILE`).

A recording is the frames a viewer of the run is sent (wire.py), one JSON line each, after a
`recording` header line: the same codec, data only, written append-only, so that a recording
cut off by a crash still reads up to its last complete line.

What is kept (`Recorder`), so that a long run's file grows about with the logarithm of its steps:

- every frame that is not a snapshot or a history (hello, state, breakpoints, log, refused,
  error, report, restarted, bye), always;
- a snapshot that must be seen, always: one with warnings, a breakpoint hit, a stop, a
  step-into trace, or a state other than "running";
- other snapshots at a spacing that doubles as the run does: every step up to step 1000, every
  2nd up to 2000, every 4th up to 4000, ... (`spacing`): 1000 snapshots for the first thousand
  steps, then about 500 for each doubling of the run. A snapshot carrying histograms or a data
  view is also kept when none was kept for HISTOGRAM_SPACING spacings, since the replay shows
  the latest of those at or before a step;
- the history (every series thinned to a few hundred points) at most every HISTORY_EVERY
  seconds, and the latest one held back written when the state changes, at bye and at close,
  so the replay has the history to the end.

Past `max_bytes` only the always-kept frames (and a last history at close) are written, after
a log line saying so. Writes are buffered and flushed about once a second and at every state
change, bye and close: a crash loses about the last second.
"""
from __future__ import annotations

import mmap
import os
import threading
import time
from dataclasses import dataclass, field

from . import wire
from .safetext import clean_obj

FORMAT = "calcml.recording/1"
MAX_BYTES = 1 << 30            # the default cap on a recording's size (1 GiB)
DENSE_STEPS = 1000             # every snapshot is kept up to this step
HISTOGRAM_SPACING = 10         # histograms / a data view kept at least every 10 spacings
HISTORY_EVERY = 10.0           # seconds between two history frames written
FLUSH_EVERY = 1.0              # seconds between two flushes at most
# frames written at once, whatever their spacing (a snapshot's own conditions are checked apart)
_FLUSH_ON = frozenset({"state", "bye", "restarted"})


def spacing(step: int) -> int:
    """Steps between two kept snapshots around `step`: 1 below DENSE_STEPS, then doubling at
    every doubling of the step (2 from 1000, 4 from 2000, 8 from 4000 ...)."""
    if step < DENSE_STEPS:
        return 1
    return 1 << (int(step) // DENSE_STEPS).bit_length()


def header(started: str | None = None) -> bytes:
    """A recording's first line (without the newline)."""
    if started is None:
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return wire.encode({"type": "recording", "format": FORMAT, "started": started})


def _get(snapshot, name: str, default=None):
    """A snapshot's field, whether it is the record or its plain dict."""
    if isinstance(snapshot, dict):
        return snapshot.get(name, default)
    return getattr(snapshot, name, default)


class Recorder:
    """Writes a run's frames to `path` as they are sent: a tap of the worker's channel.

    Pass `recorder.write` as the tap (`_Channel(stream, taps=[recorder.write])`); it is called
    in the training thread under the channel's lock, so it only appends to a buffer, and never
    raises: an OSError ends the recording, kept in `error`. `close()` writes what was held back
    and may be called more than once. The file is created (or emptied) with mode 0600; the
    header is written at once."""

    def __init__(self, path: str, max_bytes: int = MAX_BYTES, clock=time.monotonic, started: str | None = None):
        self.path = path
        self.max_bytes = max_bytes
        self.error: OSError | None = None
        self.full = False                     # past max_bytes: only what must be kept is written
        self.written = 0                      # bytes written (the header too)
        self.kept = {"snapshot": 0, "history": 0, "other": 0}
        self.dropped = 0                      # snapshot and history frames left out
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._last_step: int | None = None    # the last snapshot kept (thinning)
        self._last_extra = {"histograms": None, "data_view": None}   # the step each was last kept at
        self._last_history = None             # when a history was last written
        self._held: bytes | None = None       # the latest history, not yet written
        self._direct = False                  # the steps' snapshots come from step()
        self._last_flush = clock()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._put(header(started))
        self._flush()

    # -- the tap -------------------------------------------------------------------------------
    def write(self, message: dict, data: bytes) -> None:
        """One frame the run sent (`data`: its encoded line, without the newline)."""
        if self._closed or self.error is not None:
            return
        with self._lock:
            try:
                self._write(message, data)
            except OSError as error:
                self._fail(error)
            except Exception as error:   # never into the training
                self._fail(OSError(f"{type(error).__name__}: {error}"))

    __call__ = write

    def step(self, snapshot) -> None:
        """One step's own snapshot, from the worker before it coalesces what it sends (a viewer
        gets about 20 a second; a recording keeps every step it is due, see spacing). From the
        first of these on, the channel's snapshot frames are left out, but for the one before
        training (step 0): the steps come from here. Encoded only when kept."""
        if self._closed or self.error is not None:
            return
        with self._lock:
            self._direct = True
            try:
                if self._keep_snapshot(snapshot):
                    self._put(wire.encode({"type": "snapshot", "snapshot": snapshot}))
                    self.kept["snapshot"] += 1
                else:
                    self.dropped += 1
                if self._clock() - self._last_flush >= FLUSH_EVERY:
                    self._flush()
            except OSError as error:
                self._fail(error)
            except Exception as error:   # never into the training
                self._fail(OSError(f"{type(error).__name__}: {error}"))

    def _write(self, message: dict, data: bytes) -> None:
        kind = message.get("type")
        if kind == "snapshot" and self._direct and _get(message.get("snapshot"), "step", 0) != 0:
            return   # (the steps come from step())
        if kind == "snapshot":
            if self._keep_snapshot(message.get("snapshot")):
                self._put(data)
                self.kept["snapshot"] += 1
            else:
                self.dropped += 1
        elif kind == "history":
            now = self._clock()
            if not self.full and (self._last_history is None or now - self._last_history >= HISTORY_EVERY):
                self._put(data)
                self.kept["history"] += 1
                self._last_history, self._held = now, None
            else:
                self._held = data
                self.dropped += 1
        else:
            if kind in ("state", "bye", "restarted"):
                self._write_held()   # the history up to here belongs before what follows
            if kind == "restarted":   # a new run from step 0: thinning starts again
                self._last_step = None
                self._last_extra = {"histograms": None, "data_view": None}
            self._put(data)
            self.kept["other"] += 1
        if kind in _FLUSH_ON or self._clock() - self._last_flush >= FLUSH_EVERY:
            self._flush()

    def _keep_snapshot(self, snapshot) -> bool:
        step = _get(snapshot, "step", 0)
        if not isinstance(step, int):
            step = 0
        must = bool(_get(snapshot, "warnings")) or any(
            _get(snapshot, name) is not None for name in ("hit", "stop", "trace")) or \
            _get(snapshot, "state") != "running"
        keep = must
        if not keep and not self.full:
            last = self._last_step
            keep = last is None or step < last or step - last >= spacing(step)
            for extra, since in self._last_extra.items():
                if _get(snapshot, extra) is not None and (
                        since is None or step < since or step - since >= HISTOGRAM_SPACING * spacing(step)):
                    keep = True
        if keep:
            self._last_step = step
            for extra in self._last_extra:
                if _get(snapshot, extra) is not None:
                    self._last_extra[extra] = step
        return keep

    def _write_held(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._put(data)
            self.kept["history"] += 1
            self._last_history = self._clock()

    def _put(self, data: bytes) -> None:
        self._file.write(data + b"\n")
        self.written += len(data) + 1
        if not self.full and self.written > self.max_bytes:
            self.full = True
            note = (f"calcml: the recording reached its limit of {self.max_bytes} bytes at step "
                    f"{self._last_step if self._last_step is not None else 0}: from here on it keeps only "
                    f"warnings, breakpoint hits, stops and state changes\n")
            line = wire.encode({"type": "log", "stream": "calcml", "text": note})
            self._file.write(line + b"\n")
            self.written += len(line) + 1

    def _flush(self) -> None:
        self._file.flush()
        self._last_flush = self._clock()

    def _fail(self, error: OSError) -> None:
        self.error = error
        try:
            self._file.close()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        """Write the held-back history and close the file (again: nothing)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.error is not None:
                return
            try:
                self._write_held()
                self._file.close()
            except OSError as error:
                self._fail(error)


# -- reading ----------------------------------------------------------------------------------

class RecordingError(ValueError):
    """A file that cannot be opened as a recording; the message says why, for a person."""


@dataclass
class SnapshotEntry:
    """What the replay needs to know of a recorded snapshot without decoding it whole."""
    step: int
    state: str
    run: int                     # which run of the recording (a restart begins another)
    warnings: tuple
    stop: object
    histograms: bool
    data_view: bool
    trace: bool
    start: int                   # where its line is in the file
    end: int


@dataclass
class HistoryEntry:
    run: int
    last_step: int               # the latest step it covers (-1: empty)
    after: int                   # how many snapshots were recorded before it
    start: int
    end: int


@dataclass
class Recording:
    """A recording read back (`read_recording`). `frames` is every frame but the snapshots and
    histories, in order, each as (snapshots recorded before it, frame); the snapshots and
    histories are read from the file when asked for (`snapshot(i)`, `history(i)`)."""
    path: str
    header: object
    snapshots: list = field(default_factory=list)
    histories: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    bad_lines: int = 0           # lines that were not valid frames (skipped)
    cut: bool = False            # the last line was incomplete (the file was cut off)
    ended: bool = False          # the run's bye was recorded: it ended normally
    _data: object = None

    def snapshot(self, index: int):
        entry = self.snapshots[index]
        return wire.decode_message(self._data[entry.start:entry.end], strings=clean_obj).snapshot

    def history(self, index: int) -> dict:
        entry = self.histories[index]
        return wire.decode_message(self._data[entry.start:entry.end], strings=clean_obj).series

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()


def read_recording(path: str) -> Recording:
    """Read and check a recording: every line validated (wire.decode_message); a bad one is
    skipped and counted, an incomplete last one (cut by a crash) ignored. Raises RecordingError
    for a file that is missing, unreadable, empty or not a recording. The snapshots' and
    histories' lines stay in the file (mapped) and are decoded when asked for."""
    data = _map(path)
    first = data.find(b"\n")
    head = data[:first] if first >= 0 else data[:]
    try:
        frame = wire.decode_message(head, strings=clean_obj)
    except wire.FrameError:
        frame = None
    if not isinstance(frame, wire.RecordingFrame):
        if first < 0 and _cut_header(head):   # cut off inside its header: a recording of nothing
            return Recording(path, wire.RecordingFrame(FORMAT), cut=True, _data=data)
        raise RecordingError(f"{path} is not a calcml recording (its first line is not a recording header)")
    if frame.format != FORMAT:
        raise RecordingError(f"{path} is a recording in another format ({frame.format!r}); this calcml reads "
                             f"{FORMAT!r} recordings")
    recording = Recording(path, frame, _data=data)
    if first < 0:
        recording.cut = True
        return recording
    run, pos, size = 0, first + 1, len(data)
    while pos < size:
        end = data.find(b"\n", pos)
        if end < 0:
            recording.cut = True   # the last line, incomplete: the run was cut off while writing it
            break
        line = data[pos:end]
        start, pos = pos, end + 1
        if not line.strip():
            continue
        try:
            frame = wire.decode_message(line, strings=clean_obj)
        except wire.FrameError:
            recording.bad_lines += 1
            continue
        if isinstance(frame, wire.SnapshotFrame):
            s = frame.snapshot
            recording.snapshots.append(SnapshotEntry(
                s.step, s.state, run, tuple(s.warnings), s.stop, bool(s.histograms), s.data_view is not None,
                s.trace is not None, start, end))
        elif isinstance(frame, wire.HistoryFrame):
            steps = frame.series.get("step") or []
            last = max((int(x) for x in steps if isinstance(x, (int, float)) and x == x), default=-1)
            recording.histories.append(HistoryEntry(run, last, len(recording.snapshots), start, end))
        else:
            if isinstance(frame, wire.RestartedFrame):
                run += 1
            elif isinstance(frame, wire.ByeFrame):
                recording.ended = True
            recording.frames.append((len(recording.snapshots), frame))
    return recording


def _map(path: str):
    """The file's bytes, mapped (a large recording is not read into memory)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise RecordingError(f"{path} is empty: not a calcml recording (a recording starts with "
                                     f"a header line)")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecordingError(f"{path} is a folder, not a calcml recording") from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise RecordingError(f"{path} cannot be read: {reason}") from None


def _cut_header(head: bytes) -> bool:
    """A first line that stops inside a recording header of this format."""
    expected = header("")[:-2]   # up to the started time's opening quote
    return len(head) > 0 and (expected.startswith(head) or head.startswith(expected))
