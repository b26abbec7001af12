"""The frames between a training process and a front end: one codec for all of them.

Each frame is one JSON object a line. Only numbers, strings, lists and dicts cross (never pickle:
a debugger must not execute what it receives, and the same format can carry a remote run). A
frame is written from the records themselves (`encode`: codec.plain, NaN and infinities as the
strings 'nan', 'inf' and '-inf', which JSON lacks), and read back into them (`decode_message`):
the records' own declarations (snapshot.py) are the schema, with no converter in between.

Every line that crosses is checked before it is used: `decode_message` (what the training
process sends) and `decode_command` (what the interface sends) refuse a frame that is too
large, nested too deeply, not JSON, or not of the declared shape (a missing field or a wrong
type) with a `FrameError` saying why, and nothing else: whatever the bytes, a frame they accept
is typed as declared and can be handed to the front end's state without raising. Fields a
schema does not know are skipped (a newer sender may add some); fields it knows must have their
type.
"""
from __future__ import annotations

import re
from typing import Annotated, Union

import msgspec
import numpy as np
from msgspec import Meta, Struct

from . import codec, commands
from .snapshot import Snapshot, StopInfo


def encode(frame) -> bytes:
    """One frame (a Struct frame, or a dict of plain data and records) as a JSON line's bytes,
    without the newline; NaN and ±inf as strings (codec.for_wire)."""
    return _ENCODE(codec.for_wire(codec.plain(frame)))


_ENCODE = msgspec.json.Encoder().encode


# -- limits ----------------------------------------------------------------------------------

# The largest message a training process sends is the history (every series thinned to 240
# points): 3.8 MB for an MLP of 100 linear layers (200 parameters, 1,300 series); a step-into
# snapshot of that model is 0.5 MB. 32 MiB leaves eight times that.
MAX_FRAME_BYTES = 32 * 1024 * 1024
# A command is a few dozen bytes; the longest is a breakpoint condition someone typed.
MAX_COMMAND_BYTES = 64 * 1024
# Real frames nest at most 7 deep (snapshot > trace > op > factors > stats > shape). The limit
# is checked before parsing: msgspec guards its recursion only with the interpreter's recursion
# limit (a RecursionError at about 1,000 levels, a crash past the C stack where that limit was
# raised), and the standard json module raises RecursionError.
MAX_DEPTH = 64
# The most steps one command may ask for (more than any run, and inside every integer type).
MAX_STEPS = commands.MAX_STEPS


class FrameError(ValueError):
    """A line that is not a valid frame; the message says why, in a few words. `kind` is the
    frame's type (a message) or command name when that much could be read, else None."""

    def __init__(self, reason: str, kind: str | None = None):
        super().__init__(reason)
        self.kind = kind


# -- schemas: what each frame must look like -------------------------------------------------

_INT64 = 2**63 - 1
Int = Annotated[int, Meta(ge=-_INT64 - 1, le=_INT64)]
Count = Annotated[int, Meta(ge=0, le=_INT64)]
Shape = list[Count]
OptNum = Union[float, None]     # NaN and infinities arrive as strings; lax decoding reads them back


class _Data(Struct):
    """A nested object: unknown fields are skipped, known ones checked."""


class LayerInfo(_Data):
    name: str
    type: str


class ParamInfo(_Data):
    name: str
    shape: Shape


class ModelData(_Data):
    path: str
    name: str
    description: Union[str, None]
    seed: Union[Int, None]
    steps: Union[Int, None]
    optimizer: str
    layers: list[LayerInfo]
    params: list[ParamInfo]
    # added later; the interface reads them with .get()
    curvature_every: Union[Int, None] = None
    curvature_note: Union[str, None] = None
    bayes_layers: Union[list[str], None] = None
    sampler: Union[bool, None] = None
    noise_every: Union[Int, None] = None
    noise_samples: Union[Int, None] = None
    bayes_note: Union[str, None] = None
    restartable: Union[bool, None] = None   # a model file (not a training script): it can start again


class BreakpointItem(_Data):
    id: Int
    text: str
    describe: str


# What the training process sends, one JSON object a line, told apart by "type".

class _Frame(Struct, tag_field="type"):
    pass


class HelloFrame(_Frame, tag="hello"):
    model: ModelData


class LoadingFrame(_Frame, tag="loading"):
    path: str


class SnapshotFrame(_Frame, tag="snapshot"):
    snapshot: Snapshot          # the record's own declaration is its schema (snapshot.py)


class HistoryFrame(_Frame, tag="history"):
    series: dict[str, list[OptNum]]      # name -> values, one per entry of series["step"]


class LogFrame(_Frame, tag="log"):
    stream: str
    text: str


class BreakpointsFrame(_Frame, tag="breakpoints"):
    items: list[BreakpointItem]
    error: Union[str, None] = None


class RefusedFrame(_Frame, tag="refused"):
    message: str
    cmd: Union[str, None] = None


class StateFrame(_Frame, tag="state"):
    state: str
    stop: Union[StopInfo, None]


class ErrorFrame(_Frame, tag="error"):
    kind: str
    message: str


class ReportFrame(_Frame, tag="report"):
    path: str
    ok: bool
    message: Union[str, None] = None


class RestartedFrame(_Frame, tag="restarted"):
    """The run went back to step 0 (a new hello, snapshot, breakpoints and history follow)."""
    seed: Union[Int, None]
    kept: str             # what the new run keeps from the old one, in words


class AttachedFrame(_Frame, tag="attached"):
    """The first frame a viewer of a served run gets (and again if it fell behind and is sent
    the run afresh): what it may do; the run's model, latest snapshot (its warnings: all those
    kept so far), breakpoints, state and history follow."""
    control: bool          # its commands are obeyed (it gave the run's token); else view-only
    rank: Int = 0          # under torch.distributed: the process it is attached to, of `world`
    world: Int = 1
    address: str = ""


class RecordingFrame(_Frame, tag="recording"):
    """The first line of a recording file (recording.py): the frames that follow are those a
    viewer of the run was sent, thinned as the run grows long."""
    format: str
    started: str = ""      # when the run began (ISO 8601, local time)


class QuittingFrame(_Frame, tag="quitting"):
    pass


class ByeFrame(_Frame, tag="bye"):
    pass


Message = Union[HelloFrame, LoadingFrame, SnapshotFrame, HistoryFrame, LogFrame, BreakpointsFrame,
                RefusedFrame, StateFrame, ErrorFrame, ReportFrame, RestartedFrame, AttachedFrame, RecordingFrame,
                QuittingFrame, ByeFrame]


# What the interface sends, told apart by "cmd": the vocabulary declared in commands.py.
Command = commands.Any


# -- decoding ----------------------------------------------------------------------------------

_COMMANDS = msgspec.json.Decoder(Command)
_PLAIN = msgspec.json.Decoder()


class _Tagged(Struct):
    """Only the tag of a frame that failed validation, for the error message."""
    type: object = None
    cmd: object = None


_TAGS = msgspec.json.Decoder(_Tagged)


_DECODE_ERRORS = (msgspec.MsgspecError, RecursionError, MemoryError)


def decode_message(line: bytes | str, strings=None):
    """One line from the training process, checked: a typed frame (one of `Message`, its
    records typed as declared, NaN and ±inf read back), or FrameError. `strings`, if given, is
    applied to every string in the frame first (the interface passes safetext.clean, so that
    nothing a model supplies can act on the terminal); a history's series only have names."""
    try:
        return _decode_message(line, strings)
    except FrameError:
        raise
    except Exception as error:   # not expected; the promise is FrameError, whatever the bytes
        raise FrameError(_short(f"undecodable frame ({type(error).__name__}: {error})")) from None


def decode_command(line: bytes | str) -> dict:
    """One line from the interface, checked: a dict with "cmd" and that command's fields (with
    their defaults filled in, e.g. {"cmd": "step", "n": 1}), or FrameError."""
    try:
        return _decode_command(line)
    except FrameError:
        raise
    except Exception as error:   # not expected, as above
        raise FrameError(_short(f"undecodable command ({type(error).__name__}: {error})")) from None


def _decode_message(line, strings):
    data = _bytes(line, MAX_FRAME_BYTES, "frame")
    try:
        tree = _PLAIN.decode(data)
        if strings is not None:
            tree = _strings(tree, strings)
        frame = msgspec.convert(tree, Message, strict=False, dec_hook=codec.dec_hook)
    except _DECODE_ERRORS as error:
        raise _frame_error(error, data, "type", "frame") from None
    if isinstance(frame, HistoryFrame):
        _check_history(frame.series)
    elif isinstance(frame, SnapshotFrame) and frame.snapshot.histograms:
        _check_histograms(frame.snapshot.histograms)
    return frame


def _strings(tree, strings):
    if isinstance(tree, dict) and tree.get("type") == "history" and isinstance(tree.get("series"), dict):
        return dict(tree, series={strings(k) if isinstance(k, str) else k: v for k, v in tree["series"].items()})
    return strings(tree)


def _decode_command(line) -> dict:
    data = _bytes(line, MAX_COMMAND_BYTES, "command")
    try:
        command = _COMMANDS.decode(data)
    except _DECODE_ERRORS as error:
        raise _frame_error(error, data, "cmd", "command") from None
    return commands.to_dict(command)


def _bytes(line, limit: int, what: str) -> bytes:
    """The frame as bytes, after the size and nesting checks."""
    if isinstance(line, str):
        try:
            line = line.encode("utf-8")
        except UnicodeEncodeError:
            raise FrameError("not UTF-8 text (a lone surrogate)") from None
    elif isinstance(line, (bytearray, memoryview)):
        line = bytes(line)
    elif not isinstance(line, bytes):
        raise FrameError(f"a {what} is bytes or text, not {type(line).__name__}")
    size = len(line) - line.endswith(b"\n") - line.endswith(b"\r\n")
    if size > limit:
        raise FrameError(f"{what} too large ({size} bytes > {limit})")
    # it cannot nest deeper than it opens (most commands and small frames stop here)
    if line.count(b"[") + line.count(b"{") > MAX_DEPTH and nesting_depth(line) > MAX_DEPTH:
        raise FrameError(f"nested too deeply (more than {MAX_DEPTH} levels)")
    return line


def _frame_error(error: Exception, data: bytes, tag: str, what: str) -> FrameError:
    """A short reason for a frame msgspec refused, naming the frame's type where it has one."""
    if isinstance(error, RecursionError):
        return FrameError("nested too deeply")
    if isinstance(error, MemoryError):
        return FrameError(f"{what} too large to decode")
    text = str(error)
    body, _, path = text.partition(" - at `")
    path = path.rstrip("`").removeprefix("$").removeprefix(".")
    if not isinstance(error, msgspec.ValidationError):
        if not data.strip():
            return FrameError(f"empty {what}")
        if "truncated" in text:
            return FrameError(f"truncated {what} (the JSON ends too soon)")
        return FrameError(_short("not JSON: " + body.removeprefix("JSON is malformed: ")))
    body = re.sub(r"Object missing required field `([^`]*)`", r"missing field '\1'", body).replace("`", "")
    body = body[:1].lower() + body[1:]
    if path == tag:
        if body.startswith("invalid value "):
            label = what if what == "command" else f"{what} type"
            return FrameError(_short(f"unknown {label} {body.removeprefix('invalid value ')}"))
        return FrameError(_short(f"{what} {tag}: {body}"))
    if not path and body == f"missing field '{tag}'":
        return FrameError(f"not a {what}: missing field '{tag}'")
    try:
        kind = getattr(_TAGS.decode(data), tag)
    except _DECODE_ERRORS:
        kind = None
    kind = kind if isinstance(kind, str) and len(kind) <= 40 else None
    where = f" (at {path})" if path else ""
    return FrameError(_short(f"{kind + ' ' if kind else ''}{what}: {body}{where}"), kind)


def _short(reason: str, limit: int = 300) -> str:
    return reason if len(reason) <= limit else reason[:limit - 1] + "…"


def _check_history(series: dict) -> None:
    """Every series has one value per step (the plots index one by the other)."""
    steps = series.get("step")
    if steps is None:
        return
    for name, values in series.items():
        if len(values) != len(steps):
            raise FrameError(_short(f"history frame: series {name!r} has {len(values)} values for "
                                    f"{len(steps)} steps"), "history")


def _check_histograms(histograms: dict) -> None:
    for name, (counts, edges) in histograms.items():
        if len(edges) != len(counts) + 1:
            raise FrameError(_short(f"snapshot frame: histogram {name!r} has {len(counts)} counts and "
                                    f"{len(edges)} edges"), "snapshot")


_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_BLOCK = 1 << 20


def nesting_depth(data: bytes, limit: int = MAX_DEPTH) -> int:
    """How deep the arrays and objects of this JSON text nest (brackets inside strings do not
    count), found without parsing it: no recursion, a few passes over the bytes in C and numpy,
    in blocks of bounded memory. Exact up to `limit`; past it, some number above `limit`.

    On text that is not JSON the answer may be too high, never lower than the depth a parser
    reaches before it meets the fault: up to there, strings start and end where it sees them."""
    if b"\\" in data:
        # escapes, left to right as in a string: drop each escaped backslash, then each escaped
        # quote; every quote left starts or ends a string
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = np.frombuffer(data.translate(None, _NOT_STRUCTURAL), dtype=np.uint8)   # [ ] { } "
    level = deepest = quotes = 0
    for start in range(0, len(marks), _BLOCK):
        chunk = marks[start:start + _BLOCK]
        inside = (np.cumsum(chunk == 34, dtype=np.int32) + quotes) & 1    # odd: within a string
        quotes = int(inside[-1])
        levels = np.cumsum(np.where(inside == 0, _STEP[chunk], 0), dtype=np.int32) + level
        deepest, level = max(deepest, int(levels.max())), int(levels[-1])
        if deepest > limit:
            break
    return deepest


# -- history ---------------------------------------------------------------------------------

def history_to_wire(history, names=None, max_points: int = 240) -> dict:
    """The history's series, each thinned to at most `max_points` points evenly spaced in steps
    (a plot is a few hundred columns wide at most; the history itself keeps older steps thinned,
    so its rows are not evenly spaced). A series measured only every few steps (curvature,
    update ratios: NaN in between) keeps at each point the latest measurement since the point
    before, so thinning does not drop its measurements."""
    columns = history.columns(names)          # every series from one moment
    steps = columns.pop("step")
    keep = None
    if len(steps) > max_points:
        wanted = np.linspace(steps[0], steps[-1], max_points)
        keep = np.unique(np.minimum(np.searchsorted(steps, wanted), len(steps) - 1))
    out = {"step": (steps if keep is None else steps[keep]).astype(int).tolist()}
    for name, values in columns.items():
        out[name] = (values if keep is None else _latest_per_point(values, keep)).tolist()
    return out


def _latest_per_point(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """values[keep], except that a NaN there becomes the latest non-NaN value after the previous
    kept index (NaN when there is none)."""
    measured = ~np.isnan(values)
    latest = np.maximum.accumulate(np.where(measured, np.arange(len(values)), -1))[keep]
    previous = np.concatenate(([-1], keep[:-1]))
    return np.where(latest > previous, values[np.maximum(latest, 0)], np.nan)


def history_arrays(series: dict) -> dict:
    """A history frame's series as float arrays (NaN where a step wrote nothing)."""
    return {k: np.asarray(values, dtype=float) for k, values in series.items()}
