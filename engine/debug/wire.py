"""Snapshots as plain JSON-ready data and back: the format between a session and a front end.

Only numbers, strings, lists and dicts cross the wire (never pickle: a debugger must not
execute what it receives, and the same format can carry a remote run). NaN and infinities,
which JSON lacks, travel as the strings 'nan', 'inf' and '-inf'.

Every line that crosses is checked before it is used: `decode_message` (what the training
process sends) and `decode_command` (what the interface sends) refuse a frame that is too
large, nested too deeply, not JSON, or not of the declared shape (the msgspec schemas below:
a missing field or a wrong type) with a `FrameError` saying why, and nothing else: whatever the
bytes, a frame they accept can be handed to `snapshot_from_wire`, `history_from_wire` and the
front end's state without raising. Fields a schema does not know are allowed and passed on
(a newer sender may add some); fields it knows must have their type.
"""
from __future__ import annotations

import json
import re
from typing import Annotated, Literal, Union

import msgspec
import numpy as np
from msgspec import Meta, Struct

from . import commands
from .nonfinite import from_wire_number as _unf
from .nonfinite import wire_number as _f
from .breakpoints import Breakpoint, Hit
from .snapshot import BayesStats, CurvatureStats
from .diagnostics import Condition, WarningEvent
from .snapshot import LayerStats, ParamStats
from .session import Snapshot, StopInfo
from .tracesummary import ArrayStats, OpSummary, TraceSummary


def dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def loads(line: str) -> dict:
    """Plain JSON, unchecked: for data this process made itself. What another process sent goes
    through decode_message / decode_command."""
    return json.loads(line)


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
NonFinite = Literal["nan", "inf", "-inf"]
Num = Union[float, NonFinite]            # a float; NaN and infinities as strings
OptNum = Union[float, NonFinite, None]
# an array's statistics: [shape, mean, std, min, max, zeros, non_finite]
Stats = tuple[Shape, Num, Num, Num, Num, Count, Count]


class _Data(Struct):
    """A nested object: unknown fields are skipped, known ones checked."""


class ParamData(_Data):
    name: str
    shape: Shape
    grad_norm: Num
    penalty_grad_norm: Num
    total_grad_norm: Num
    weight_norm: Num
    update_norm: Num
    update_ratio: Num
    sparsity: Num
    effective_lr: OptNum = None
    hessian_diag: OptNum = None


class LayerData(_Data):
    name: str
    type: str
    params: dict[str, ParamData]
    output_shape: Union[Shape, None]
    grad_in_norm: OptNum
    grad_out_norm: OptNum
    activation: Union[str, None]
    mean_local_derivative: OptNum
    dead_fraction: OptNum
    saturated_fraction: OptNum


class WarningData(_Data):
    step: Int
    kind: str
    layer: Union[str, None]
    op: Union[str, None]
    value: Num
    threshold: Num
    message: str
    event: str


class ConditionData(_Data):
    kind: str
    layer: Union[str, None]
    value: Num
    threshold: Num
    message: str
    op: Union[str, None]


class StopData(_Data):
    step: Int
    reason: str
    detail: str


class HitData(_Data):
    id: Int
    text: str
    kind: str
    step: Int
    why: str


class OpData(_Data):
    index: Int
    phase: str
    op: str
    id: Int
    scope: str
    module_type: Union[str, None]
    inputs: list[str]
    formulas: list[str]
    value: Union[Stats, None]
    upstream: Union[Stats, None]
    factors: list[Union[Stats, None]]
    grads: list[Union[Stats, None]]


class CurvatureData(_Data):
    step: Int
    lambda_max: Num
    trace: Num
    trace_se: Num
    lr_edge: OptNum
    edge_formula: str
    n_params: Count
    hessian_diag: dict[str, Num]


class BayesData(_Data):
    step: Int
    elbo: OptNum
    expected_log_likelihood: OptNum
    kl: OptNum
    posterior_sigma: dict[str, OptNum]
    gradient_noise: dict[str, OptNum]
    mc_loss: OptNum
    mc_loss_se: OptNum
    mc_samples: Count
    noise_step: Union[Int, None]


class SnapshotData(_Data):
    step: Int
    epoch: Int
    state: str
    loss: Num
    val_loss: OptNum
    penalty: Num
    lr: Num
    steps_per_sec: Num
    regularizer: tuple[str, OptNum]
    layers: list[LayerData]
    warnings: list[WarningData]
    holding: list[ConditionData]
    stop: Union[StopData, None]
    hit: Union[HitData, None]
    histograms: Union[dict[str, tuple[list[Count], list[Num]]], None]   # name -> [counts, edges]
    trace: Union[list[OpData], None]
    curvature: Union[CurvatureData, None] = None
    optimizer_state: Union[dict[str, Union[bool, int, float, str, None]], None] = None
    bayes: Union[BayesData, None] = None


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
    snapshot: SnapshotData


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
    stop: Union[StopData, None]


class ErrorFrame(_Frame, tag="error"):
    kind: str
    message: str


class ReportFrame(_Frame, tag="report"):
    path: str
    ok: bool
    message: Union[str, None] = None


class QuittingFrame(_Frame, tag="quitting"):
    pass


class ByeFrame(_Frame, tag="bye"):
    pass


Message = Union[HelloFrame, LoadingFrame, SnapshotFrame, HistoryFrame, LogFrame, BreakpointsFrame,
                RefusedFrame, StateFrame, ErrorFrame, ReportFrame, QuittingFrame, ByeFrame]


# What the interface sends, told apart by "cmd": the vocabulary declared in commands.py.
Command = commands.Any


# -- decoding ----------------------------------------------------------------------------------

_MESSAGES = msgspec.json.Decoder(Message)
_COMMANDS = msgspec.json.Decoder(Command)
_PLAIN = msgspec.json.Decoder()


class _Tagged(Struct):
    """Only the tag of a frame that failed validation, for the error message."""
    type: object = None
    cmd: object = None


_TAGS = msgspec.json.Decoder(_Tagged)


_DECODE_ERRORS = (msgspec.MsgspecError, RecursionError, MemoryError)


def decode_message(line: bytes | str) -> dict:
    """One line from the training process, checked: the plain dict `wire.loads` would give
    (ready for DebugState.apply), or FrameError."""
    try:
        return _decode_message(line)
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


def _decode_message(line) -> dict:
    data = _bytes(line, MAX_FRAME_BYTES, "frame")
    try:
        frame = _MESSAGES.decode(data)
    except _DECODE_ERRORS as error:
        raise _frame_error(error, data, "type", "frame") from None
    if isinstance(frame, HistoryFrame):
        _check_history(frame.series)
    elif isinstance(frame, SnapshotFrame) and frame.snapshot.histograms:
        _check_histograms(frame.snapshot.histograms)
    try:
        return _PLAIN.decode(data)
    except _DECODE_ERRORS as error:
        # only a field the schema skips can fail here (a number beyond what JSON decoding allows)
        raise _frame_error(error, data, "type", "frame") from None


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


# -- snapshot -> dict ------------------------------------------------------------------------

def _param(p: ParamStats) -> dict:
    return {"name": p.name, "shape": list(p.shape), "grad_norm": _f(p.grad_norm),
            "penalty_grad_norm": _f(p.penalty_grad_norm), "total_grad_norm": _f(p.total_grad_norm),
            "weight_norm": _f(p.weight_norm), "update_norm": _f(p.update_norm),
            "update_ratio": _f(p.update_ratio), "sparsity": _f(p.sparsity),
            "effective_lr": _f(p.effective_lr), "hessian_diag": _f(p.hessian_diag)}


def _layer(l: LayerStats) -> dict:
    return {"name": l.name, "type": l.type, "params": {k: _param(v) for k, v in l.params.items()},
            "output_shape": list(l.output_shape) if l.output_shape else None,
            "grad_in_norm": _f(l.grad_in_norm), "grad_out_norm": _f(l.grad_out_norm), "activation": l.activation,
            "mean_local_derivative": _f(l.mean_local_derivative), "dead_fraction": _f(l.dead_fraction),
            "saturated_fraction": _f(l.saturated_fraction)}


def warning_to_wire(w: WarningEvent) -> dict:
    return {"step": w.step, "kind": w.kind, "layer": w.layer, "op": w.op, "value": _f(w.value),
            "threshold": _f(w.threshold), "message": w.message, "event": w.event}


def _condition(c: Condition) -> dict:
    return {"kind": c.kind, "layer": c.layer, "value": _f(c.value), "threshold": _f(c.threshold),
            "message": c.message, "op": c.op}


def _stats(a: ArrayStats | None):
    if a is None:
        return None
    return [list(a.shape), _f(a.mean), _f(a.std), _f(a.min), _f(a.max), a.zeros, a.non_finite]


def _op(o: OpSummary) -> dict:
    return {"index": o.index, "phase": o.phase, "op": o.op, "id": o.id, "scope": o.scope,
            "module_type": o.module_type, "inputs": list(o.inputs), "formulas": list(o.formulas),
            "value": _stats(o.value), "upstream": _stats(o.upstream),
            "factors": [_stats(f) for f in o.factors], "grads": [_stats(g) for g in o.grads]}


def snapshot_to_wire(s: Snapshot, warnings=None) -> dict:
    """`warnings` replaces the snapshot's own events (a publisher that skipped snapshots passes
    every event since its last message, so none is lost)."""
    events = s.warnings if warnings is None else warnings
    return {
        "step": s.step, "epoch": s.epoch, "state": s.state, "loss": _f(s.loss), "val_loss": _f(s.val_loss),
        "penalty": _f(s.penalty), "lr": _f(s.lr), "steps_per_sec": _f(s.steps_per_sec),
        "regularizer": [s.regularizer[0], _f(s.regularizer[1])],
        "layers": [_layer(l) for l in s.layers],
        "warnings": [warning_to_wire(w) for w in events],
        "holding": [_condition(c) for c in s.holding],
        "stop": s.stop.to_dict() if s.stop else None,
        "hit": {"id": s.hit.breakpoint.id, "text": s.hit.breakpoint.text, "kind": s.hit.breakpoint.kind,
                "step": s.hit.step, "why": s.hit.why} if s.hit else None,
        "histograms": {k: [c.tolist(), [_f(e) for e in edges]] for k, (c, edges) in s.histograms.items()}
        if s.histograms else None,
        "trace": [_op(o) for o in s.trace.ops] if s.trace else None,
        "curvature": _curvature(s.curvature),
        "optimizer_state": _plain(s.optimizer_state),
        "bayes": _bayes(s.bayes),
    }


def _bayes(b: BayesStats | None):
    if b is None:
        return None
    return {"step": b.step, "elbo": _f(b.elbo), "expected_log_likelihood": _f(b.expected_log_likelihood),
            "kl": _f(b.kl), "posterior_sigma": {k: _f(v) for k, v in b.posterior_sigma.items()},
            "gradient_noise": {k: _f(v) for k, v in b.gradient_noise.items()}, "mc_loss": _f(b.mc_loss),
            "mc_loss_se": _f(b.mc_loss_se), "mc_samples": b.mc_samples, "noise_step": b.noise_step}


def _bayes_back(d):
    if d is None:
        return None
    return BayesStats(step=d["step"], elbo=_unf(d["elbo"]), expected_log_likelihood=_unf(d["expected_log_likelihood"]),
                      kl=_unf(d["kl"]), posterior_sigma={k: _unf(v) for k, v in d["posterior_sigma"].items()},
                      gradient_noise={k: _unf(v) for k, v in d["gradient_noise"].items()},
                      mc_loss=_unf(d["mc_loss"]), mc_loss_se=_unf(d["mc_loss_se"]), mc_samples=d["mc_samples"],
                      noise_step=d["noise_step"])


def _curvature(c: CurvatureStats | None):
    if c is None:
        return None
    return {"step": c.step, "lambda_max": _f(c.lambda_max), "trace": _f(c.trace), "trace_se": _f(c.trace_se),
            "lr_edge": _f(c.lr_edge), "edge_formula": c.edge_formula, "n_params": c.n_params,
            "hessian_diag": {k: _f(v) for k, v in c.hessian_diag.items()}}


def _curvature_back(d):
    if d is None:
        return None
    return CurvatureStats(step=d["step"], lambda_max=_unf(d["lambda_max"]), trace=_unf(d["trace"]),
                          trace_se=_unf(d["trace_se"]), lr_edge=_unf(d["lr_edge"]),
                          edge_formula=d["edge_formula"], n_params=d["n_params"],
                          hessian_diag={k: _unf(v) for k, v in d["hessian_diag"].items()})


def _plain(state: dict | None):
    """An optimiser's state for display: numbers (NaN/inf as strings), booleans and strings."""
    if state is None:
        return None
    out = {}
    for key, value in state.items():
        if isinstance(value, bool) or isinstance(value, str) or value is None:
            out[key] = value
        elif isinstance(value, (int, float, np.number)):
            out[key] = value if isinstance(value, int) else _f(value)
    return out


def _plain_back(d: dict | None):
    if d is None:
        return None
    return {k: (float(v) if v in ("nan", "inf", "-inf") else v) for k, v in d.items()}


# -- dict -> snapshot ------------------------------------------------------------------------

def _param_back(d: dict) -> ParamStats:
    return ParamStats(name=d["name"], shape=tuple(d["shape"]), grad_norm=_unf(d["grad_norm"]),
                      penalty_grad_norm=_unf(d["penalty_grad_norm"]), total_grad_norm=_unf(d["total_grad_norm"]),
                      weight_norm=_unf(d["weight_norm"]), update_norm=_unf(d["update_norm"]),
                      update_ratio=_unf(d["update_ratio"]), sparsity=_unf(d["sparsity"]),
                      effective_lr=_unf(d.get("effective_lr")), hessian_diag=_unf(d.get("hessian_diag")))


def _layer_back(d: dict) -> LayerStats:
    return LayerStats(name=d["name"], type=d["type"], params={k: _param_back(v) for k, v in d["params"].items()},
                      output_shape=tuple(d["output_shape"]) if d["output_shape"] else None,
                      grad_in_norm=_unf(d["grad_in_norm"]), grad_out_norm=_unf(d["grad_out_norm"]),
                      activation=d["activation"], mean_local_derivative=_unf(d["mean_local_derivative"]),
                      dead_fraction=_unf(d["dead_fraction"]), saturated_fraction=_unf(d["saturated_fraction"]))


def warning_from_wire(d: dict) -> WarningEvent:
    return WarningEvent(d["step"], d["kind"], d["layer"], d["op"], _unf(d["value"]), _unf(d["threshold"]),
                        d["message"], d["event"])


def _stats_back(v):
    if v is None:
        return None
    shape, mean, std, lo, hi, zeros, bad = v
    return ArrayStats(tuple(shape), _unf(mean), _unf(std), _unf(lo), _unf(hi), zeros, bad)


def _op_back(d: dict) -> OpSummary:
    return OpSummary(d["index"], d["phase"], d["op"], d["id"], d["scope"], d["module_type"], tuple(d["inputs"]),
                     tuple(d["formulas"]), value=_stats_back(d["value"]), upstream=_stats_back(d["upstream"]),
                     factors=tuple(_stats_back(f) for f in d["factors"]),
                     grads=tuple(_stats_back(g) for g in d["grads"]))


def _stop_back(d):
    # by name: a frame may carry fields this version does not know
    return StopInfo(d["step"], d["reason"], d["detail"]) if d else None


def snapshot_from_wire(d: dict) -> Snapshot:
    hit = None
    if d["hit"]:
        h = d["hit"]
        hit = Hit(Breakpoint(h["id"], h["kind"], h["text"]), h["step"], h["why"])
    histograms = None
    if d["histograms"]:
        histograms = {k: (np.asarray(c), np.asarray([_unf(e) for e in edges])) for k, (c, edges) in
                      d["histograms"].items()}
    return Snapshot(
        step=d["step"], epoch=d["epoch"], state=d["state"], loss=_unf(d["loss"]), val_loss=_unf(d["val_loss"]),
        penalty=_unf(d["penalty"]), lr=_unf(d["lr"]), steps_per_sec=_unf(d["steps_per_sec"]),
        regularizer=(d["regularizer"][0], _unf(d["regularizer"][1])),
        layers=tuple(_layer_back(l) for l in d["layers"]),
        warnings=tuple(warning_from_wire(w) for w in d["warnings"]),
        holding=tuple(Condition(c["kind"], c["layer"], _unf(c["value"]), _unf(c["threshold"]), c["message"], c["op"])
                      for c in d["holding"]),
        stop=_stop_back(d["stop"]), hit=hit, histograms=histograms,
        trace=TraceSummary(tuple(_op_back(o) for o in d["trace"])) if d["trace"] else None,
        curvature=_curvature_back(d.get("curvature")), optimizer_state=_plain_back(d.get("optimizer_state")),
        bayes=_bayes_back(d.get("bayes")))


def history_to_wire(history, names=None, max_points: int = 240) -> dict:
    """The history's series, each thinned to at most `max_points` points evenly spaced in steps
    (a plot is a few hundred columns wide at most; the history itself keeps older steps thinned,
    so its rows are not evenly spaced). A series measured only every few steps (curvature,
    update ratios: NaN in between) keeps at each point the latest measurement since the point
    before, so thinning does not drop its measurements."""
    steps = history.series("step")
    keep = None
    if len(steps) > max_points:
        wanted = np.linspace(steps[0], steps[-1], max_points)
        keep = np.unique(np.minimum(np.searchsorted(steps, wanted), len(steps) - 1))
    out = {"step": (steps if keep is None else steps[keep]).astype(int).tolist()}
    for name in names if names is not None else history.names():
        if name != "step" and name in history:
            values = history.series(name)
            values = values if keep is None else _latest_per_point(values, keep)
            if np.isfinite(values).all():
                out[name] = values.tolist()
            else:
                out[name] = [_f(v) for v in values]
    return out


def _latest_per_point(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """values[keep], except that a NaN there becomes the latest non-NaN value after the previous
    kept index (NaN when there is none)."""
    measured = ~np.isnan(values)
    latest = np.maximum.accumulate(np.where(measured, np.arange(len(values)), -1))[keep]
    previous = np.concatenate(([-1], keep[:-1]))
    return np.where(latest > previous, values[np.maximum(latest, 0)], np.nan)


def history_from_wire(d: dict) -> dict:
    return {k: np.asarray([np.nan if v is None else float(v) for v in values]) for k, values in d.items()}
