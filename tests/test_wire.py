"""The wire's codec and its checks. Every frame a real session produces decodes into the records
that were sent (encoding the decoded frame gives the same JSON back); every malformed one (a
field missing or of the wrong type, cut short, not UTF-8, nested too deeply, too large, of an
unknown type) raises FrameError and nothing else, and whatever decode_message accepts is typed
as declared and taken by the front end's state without raising. The same for commands and
decode_command."""
from __future__ import annotations

import copy
import functools
import json
import math
import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calcml.debug import Session, codec, load_model_file, wire
from calcml.debug.session import SessionConfig
from calcml.debug.snapshot import Snapshot
from calcml.debug.worker import model_info

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
FrameError = wire.FrameError


# -- real frames ---------------------------------------------------------------------------------

def _session(name: str, steps=None, **config) -> Session:
    return Session(load_model_file(str(SAMPLES / name), steps=steps), SessionConfig(**config))


def _ticks(session: Session, limit: int) -> list:
    """Tick until the session has nothing to do (at most `limit` ticks): the snapshots."""
    out = []
    for _ in range(limit):
        snapshot = session.tick()
        if snapshot is None:
            break
        out.append(snapshot)
    return out


def _state(session: Session) -> dict:
    return {"type": "state", "state": session.state, "stop": session.stop_info}


def _breakpoints(session: Session, error=None) -> dict:
    items = [{"id": b.id, "text": b.text, "describe": b.describe()} for b in session.breakpoints]
    return {"type": "breakpoints", "items": items, "error": error}


def _snap(snapshot) -> dict:
    return {"type": "snapshot", "snapshot": snapshot}


@functools.lru_cache(maxsize=1)
def real_frames() -> tuple:
    """(label, frame) for frames of every type, as the training process sends them (the JSON
    object of each, as plain data)."""
    frames = []

    def add(label, frame):
        frames.append((label, json.loads(wire.encode(frame))))

    # a recording's first line, and a served run's first frame to a viewer (the run follows)
    from calcml.debug import recording
    add("recording", json.loads(recording.header(started="2026-12-02T10:00:00")))
    add("attached", {"type": "attached", "control": False, "rank": 1, "world": 2, "address": "/tmp/run.rank1.sock"})

    # xor: the first snapshot (histograms), a breakpoint hit, a step-into trace, the history
    s = _session("xor_mlp.py", curvature_every=3, batch_noise_every=2)
    # (first: it clears the front end's run, which the frames below then fill again)
    add("restarted", {"type": "restarted", "seed": 0, "kept": "1 breakpoint, lr 0.05"})
    add("xor hello", {"type": "hello", "model": model_info(s)})
    add("xor initial snapshot", _snap(s.initial_snapshot()))
    s.add_breakpoint("step 4")
    s.add_breakpoint("exploding_gradient")
    add("xor breakpoints", _breakpoints(s))
    add("xor breakpoints with error", _breakpoints(s, error="'nonsense' is not a warning kind"))
    s.run()
    snaps = _ticks(s, 10)
    hit = [x for x in snaps if x.hit is not None]
    assert hit, "the breakpoint at step 4 should have been hit"
    add("xor breakpoint hit", _snap(hit[0]))
    add("xor state paused", _state(s))
    s.step(3)
    for x in _ticks(s, 5):
        add(f"xor step {x.step}", _snap(x))
    s.step_into()
    traced = [x for x in _ticks(s, 3) if x.trace is not None]
    assert traced
    add("xor step-into trace", _snap(traced[0]))
    assert traced[0].curvature is not None and traced[0].batch_noise is not None
    add("xor history", {"type": "history", "series": wire.history_to_wire(s.history)})

    # a NaN stops the run: warnings, a stop, the trace of the step that made it
    s = _session("nan_demo.py")
    add("nan hello", {"type": "hello", "model": model_info(s)})
    s.run()
    snaps = _ticks(s, 50)
    assert s.stop_info is not None and s.stop_info.reason == "non_finite"
    add("nan stop snapshot", _snap(snaps[-1]))
    add("nan state stopped", _state(s))
    add("nan history", {"type": "history", "series": wire.history_to_wire(s.history)})

    # Bayesian layers: ELBO terms, posterior sigma, gradient noise
    s = _session("bayes_regression.py", noise_every=2, noise_samples=3, curvature_every=0)
    add("bayes hello", {"type": "hello", "model": model_info(s)})
    s.step(4)
    snaps = _ticks(s, 6)
    assert snaps[-1].bayes is not None and snaps[-1].bayes.gradient_noise
    add("bayes snapshot", _snap(snaps[-1]))
    add("bayes history", {"type": "history", "series": wire.history_to_wire(s.history)})

    # Newton: the optimiser's own state; HMC: a sampler
    s = _session("newton_logreg.py", steps=3)
    s.step(2)
    snaps = _ticks(s, 3)
    assert snaps[-1].optimizer_state
    add("newton snapshot", _snap(snaps[-1]))
    add("newton hello", {"type": "hello", "model": model_info(s)})
    s = _session("hmc_logreg.py")
    add("hmc hello", {"type": "hello", "model": model_info(s)})
    s.step(2)
    add("hmc snapshot", _snap(_ticks(s, 3)[-1]))

    # the small ones, in the shapes the worker sends
    add("log", {"type": "log", "stream": "stdout", "text": "epoch 1 [ok] {\"quoted\"} \\ done\n"})
    add("refused", {"type": "refused", "cmd": "lr", "message": "the learning rate must be a positive number"})
    add("refused unnamed", {"type": "refused", "cmd": None, "message": "a malformed command was ignored"})
    add("error", {"type": "error", "kind": "model_file", "message": "model.py: no `model` defined"})
    add("report ok", {"type": "report", "path": "/tmp/run.json", "ok": True, "message": None})
    add("report failed", {"type": "report", "path": "/tmp/run.json", "ok": False,
                          "message": "PermissionError: denied"})
    add("loading", {"type": "loading", "path": "sample_models/xor_mlp.py"})
    add("quitting", {"type": "quitting"})
    add("bye", {"type": "bye"})
    return tuple(frames)


def line(frame) -> bytes:
    return wire.encode(frame) + b"\n"


def kind_of(frame) -> str:
    return type(frame).__struct_config__.tag


def sent_again(frame) -> dict:
    """A decoded frame written out again, as plain data."""
    return json.loads(wire.encode(frame))


def consume(frame) -> None:
    """What the front end does with a frame (DebugState.apply and the screens' reads of the
    records and the model): it must not raise on anything decode_message accepted."""
    from calcml.tui.backend import DebugState
    DebugState().apply(frame)
    kind = kind_of(frame)
    message = codec.plain(frame)
    if kind == "snapshot":
        snapshot = frame.snapshot
        for layer in snapshot.layers:
            layer.grad_ratio
            for p in layer.params.values():
                p.grad_norm + p.weight_norm
        if snapshot.trace is not None:
            snapshot.trace.first_non_finite()
        if snapshot.histograms:
            for counts, edges in snapshot.histograms.values():
                counts.sum(), edges.min()
    elif kind == "history":
        history = wire.history_arrays(frame.series)
        steps = history.get("step")
        if steps is None:
            return
        for values in history.values():
            assert len(values) == len(steps)
            if len(values):
                steps[values == values]     # the plots index the steps by each series
    elif kind == "hello":
        model = message["model"]
        assert isinstance(model.get("name", "…"), str)
        (model.get("description") or "").split("\n")
        [p["name"] for p in model.get("params", [])]
        [layer["name"] for layer in model.get("layers", [])]
        list(model.get("bayes_layers") or [])
    elif kind == "state":
        message["state"], message["stop"]
        if message["stop"]:
            message["stop"]["reason"], message["stop"]["detail"], message["stop"]["step"]
    elif kind == "log":
        message["stream"] + message["text"]
    elif kind == "breakpoints":
        [(b["id"], b["text"], b["describe"]) for b in message["items"]]
        message.get("error")
    elif kind in ("refused", "error"):
        message["message"] + "\n"
    elif kind == "report":
        message["path"], message["ok"], message.get("message")
    elif kind == "loading":
        message["path"] + ""
    elif kind == "restarted":
        message["kept"] + str(message["seed"])


# -- round trips -----------------------------------------------------------------------------------

def test_every_kind_of_frame_is_covered():
    kinds = {frame["type"] for _, frame in real_frames()}
    assert kinds == {"hello", "snapshot", "history", "log", "breakpoints", "refused", "state", "error",
                     "report", "loading", "restarted", "attached", "recording", "quitting", "bye"}
    tags = {t.__struct_config__.tag for t in wire.Message.__args__}
    assert tags == kinds


@pytest.mark.parametrize("index", range(len(real_frames())), ids=[label for label, _ in real_frames()])
def test_real_frames_pass_unchanged(index):
    label, frame = real_frames()[index]
    data = line(frame)
    decoded = wire.decode_message(data)
    for form in (data, data.decode(), data.rstrip(b"\n"), data.rstrip(b"\n") + b"\r\n", bytearray(data)):
        assert sent_again(wire.decode_message(form)) == frame
    assert kind_of(decoded) == frame["type"]
    consume(decoded)
    if frame["type"] == "snapshot":
        assert isinstance(decoded.snapshot, Snapshot)   # the record itself, typed as declared
    if frame["type"] == "history":
        assert wire.history_arrays(decoded.series).keys() == frame["series"].keys()


def test_a_snapshot_comes_back_as_the_records_that_were_sent():
    """Decoded, a snapshot is the Snapshot the session made: every record and number equal
    (NaN where NaN was sent, ±inf where ±inf was, None where None was)."""
    s = _session("nan_demo.py")
    s.run()
    snapshots = _ticks(s, 50)
    for sent in (snapshots[0], snapshots[-1], s.initial_snapshot()):
        back = wire.decode_message(line(_snap(sent))).snapshot
        assert type(back) is Snapshot and _same(back, sent)
    assert any(not math.isfinite(w.value) for w in snapshots[-1].warnings)


def _same(a, b) -> bool:
    """Equal, with NaN equal to NaN, arrays compared by value and any sequence as a tuple."""
    import numbers

    import numpy as np
    if all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in (a, b)):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, msgspec.Struct):
        return type(a) is type(b) and all(_same(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) or type(a).__name__ == "StepLayers":
        a, b = tuple(a), tuple(b)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


def test_the_type_may_come_anywhere_in_the_object():
    assert wire.decode_message('{"path":"m.py","type":"loading"}') == wire.LoadingFrame(path="m.py")
    assert wire.decode_command('{"n":4,"cmd":"step"}') == {"cmd": "step", "n": 4}


def test_the_real_frames_have_what_they_should():
    frames = dict(real_frames())
    assert frames["xor step-into trace"]["snapshot"]["trace"]["ops"]
    assert frames["xor step-into trace"]["snapshot"]["curvature"]["lambda_max"] is not None
    assert frames["xor breakpoint hit"]["snapshot"]["hit"]["step"] == 4
    assert frames["xor initial snapshot"]["snapshot"]["histograms"]
    nan = frames["nan stop snapshot"]["snapshot"]
    assert nan["stop"]["reason"] == "non_finite" and nan["warnings"]
    assert "nan" in json.dumps(nan) or "inf" in json.dumps(nan)
    assert frames["bayes snapshot"]["snapshot"]["bayes"]["posterior_sigma"]
    assert frames["newton snapshot"]["snapshot"]["optimizer_state"]
    assert frames["hmc hello"]["model"]["sampler"] is True


def test_real_frames_reach_the_front_ends_state():
    from calcml.tui.backend import DebugState

    state = DebugState()
    for _, frame in real_frames():
        state.apply(wire.decode_message(line(frame)))
    assert state.snapshot is not None and state.model is not None and state.history


def test_non_finite_numbers_travel_as_strings_and_come_back():
    frame = dict(real_frames())["nan stop snapshot"]
    text = line(frame)
    assert b"NaN" not in text and b"Infinity" not in text
    snapshot = wire.decode_message(text).snapshot
    assert any(math.isinf(w.value) or math.isnan(w.value) for w in snapshot.warnings) or \
        not math.isfinite(snapshot.loss)


# -- the frames' shape: which fields may be missing or null -------------------------------------------

# dicts whose keys are names (parameters, series), not fields
MAPS = {"snapshot.layers[].params", "snapshot.histograms", "series", "snapshot.curvature.hessian_diag",
        "snapshot.bayes.posterior_sigma", "snapshot.bayes.gradient_noise", "snapshot.optimizer_state",
        "snapshot.batch_noise.by_param"}
# fixed-length arrays: the index is part of the path
TUPLES = {"snapshot.regularizer", "snapshot.histograms{}", "snapshot.trace.ops[].value",
          "snapshot.trace.ops[].upstream", "snapshot.trace.ops[].factors[]", "snapshot.trace.ops[].grads[]",
          "snapshot.data_view.x_range", "snapshot.data_view.y_range", "snapshot.data_view.points[]"}
LATER_MODEL_FIELDS = ("curvature_every", "curvature_note", "bayes_layers", "sampler", "noise_every",
                      "noise_samples", "bayes_note", "restartable")
_PARAM = "snapshot.layers[].params{}."
_LAYER = "snapshot.layers[]."
_BAYES = "snapshot.bayes."
_NOISE = "snapshot.batch_noise."
_OP = "snapshot.trace.ops[]."
_VIEW = "snapshot.data_view."
# fields that may be left out: those a record declares with a default
OPTIONAL = {
    "snapshot": {_PARAM + "effective_lr", _PARAM + "hessian_diag", "snapshot.stop", "snapshot.hit",
                 "snapshot.histograms", "snapshot.trace", "snapshot.curvature", "snapshot.optimizer_state",
                 "snapshot.bayes", "snapshot.warnings[].event", "snapshot.holding[].op",
                 "snapshot.curvature.hessian_diag", "snapshot.curvature.n_params", _OP + "value", _OP + "upstream",
                 _OP + "factors", _OP + "grads", _OP + "name"}
    | {_LAYER + k for k in ("params", "output_shape", "grad_in_norm", "grad_out_norm", "activation",
                            "mean_local_derivative", "dead_fraction", "saturated_fraction", "kept_fraction",
                            "grad_in_total_norm")}
    | {_BAYES + k for k in ("elbo", "expected_log_likelihood", "kl", "posterior_sigma", "gradient_noise", "mc_loss",
                            "mc_loss_se", "mc_samples", "noise_step")}
    | {"snapshot.batch_noise"} | {_NOISE + k for k in ("group_size", "population", "by_param", "note")}
    | {"snapshot.data_view"} | {_VIEW + k for k in ("x_range", "y_range", "columns", "rows", "classes", "class_names",
                                                    "predicted", "confidence", "values", "points", "labels",
                                                    "targets", "accuracy", "fit")},
    "hello": {f"model.{k}" for k in LATER_MODEL_FIELDS},
    "breakpoints": {"error"}, "refused": {"cmd"}, "report": {"message"},
    "attached": {"rank", "world", "address"}, "recording": {"started"},
}
NULLABLE = {
    "snapshot": {"snapshot.val_loss", "snapshot.regularizer[1]", _PARAM + "effective_lr", _PARAM + "hessian_diag",
                 _LAYER + "output_shape", _LAYER + "grad_in_norm", _LAYER + "grad_out_norm", _LAYER + "activation",
                 _LAYER + "mean_local_derivative", _LAYER + "dead_fraction", _LAYER + "saturated_fraction",
                 _LAYER + "kept_fraction", _LAYER + "grad_in_total_norm",
                 "snapshot.warnings[].layer", "snapshot.warnings[].op", "snapshot.holding[].layer",
                 "snapshot.holding[].op", "snapshot.stop", "snapshot.hit", "snapshot.histograms", "snapshot.trace",
                 _OP + "module_type", _OP + "value", _OP + "upstream", _OP + "factors[]", _OP + "grads[]",
                 "snapshot.curvature",
                 "snapshot.curvature.lr_edge", "snapshot.optimizer_state", "snapshot.optimizer_state{}",
                 "snapshot.bayes", _BAYES + "elbo", _BAYES + "expected_log_likelihood", _BAYES + "kl",
                 _BAYES + "posterior_sigma{}", _BAYES + "gradient_noise{}", _BAYES + "mc_loss",
                 _BAYES + "mc_loss_se", _BAYES + "noise_step",
                 "snapshot.batch_noise", _NOISE + "noise_signal", _NOISE + "population", _NOISE + "by_param{}",
                 _NOISE + "note", "snapshot.data_view", _VIEW + "accuracy", _VIEW + "fit"},
    "history": {"series{}[]"},
    "hello": {"model.description", "model.seed", "model.steps"} | {f"model.{k}" for k in LATER_MODEL_FIELDS},
    "state": {"stop"}, "breakpoints": {"error"}, "refused": {"cmd"}, "report": {"message"},
    "restarted": {"seed"},   # (a model file may set none)
}
# where any JSON scalar is accepted (an optimiser's state: numbers, strings, booleans)
ANY_SCALAR = {"snapshot.optimizer_state{}"}
# number slots that take floats: an integer there is fine, and so is 1.5
FLOAT_SLOTS = {"series{}[]"}
# Frames are read leniently where a value written as a string converts to the declared type
# (that is how NaN and ±inf travel): "1" is read into a whole-number field as 1, "1.5" or "NaN"
# into a float field, "true" or 1 into a boolean one. What is read is of the declared type.


def _nodes(value, path=(), norm=""):
    """Every (path, normalised path, value) under `value`, the normalised path naming the field
    ('snapshot.layers[].params{}.grad_norm') whatever the list index or map key."""
    yield path, norm, value
    if isinstance(value, dict):
        for key, item in value.items():
            sub = norm + "{}" if norm in MAPS else (f"{norm}.{key}" if norm else key)
            yield from _nodes(item, path + (key,), sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nodes(item, path + (i,), norm + (f"[{i}]" if norm in TUPLES else "[]"))


def _fields(per_path: int = 2):
    """(frame, path, normalised path, value) for each field of each kind of frame, a few instances
    of each (the first ones met, over all the real frames)."""
    seen: dict = {}
    for _, frame in real_frames():
        for path, norm, value in _nodes(frame):
            if not path:
                continue
            key = (frame["type"], norm)
            if seen.get(key, 0) < per_path:
                seen[key] = seen.get(key, 0) + 1
                yield frame, path, norm, value


def _with(frame, path, replace=None, remove=False) -> dict:
    out = copy.deepcopy(frame)
    node = out
    for key in path[:-1]:
        node = node[key]
    if remove:
        del node[path[-1]]
    else:
        node[path[-1]] = replace
    return out


def _is_field(norm: str, path) -> bool:
    """Whether the node at `path` is a field of a struct (not a map entry or an array item)."""
    return isinstance(path[-1], str) and not norm.endswith("{}")


def missing_field_cases() -> list:
    """(reason, frame, expected to be refused) with one field removed."""
    cases = []
    for frame, path, norm, _ in _fields():
        if not _is_field(norm, path):
            continue
        optional = norm in OPTIONAL.get(frame["type"], ())
        cases.append((f"{frame['type']} without {norm}", _with(frame, path, remove=True), not optional))
    return cases


def _wrong_values(norm: str, value) -> list:
    """Values of the wrong type for a node that holds `value`."""
    if isinstance(value, dict):
        return [[], "x", 1, True]
    if isinstance(value, list):
        return [{}, "x", 1, {"a": 1}]
    if isinstance(value, bool):
        return ["yes", 2, [], {}]
    if isinstance(value, str):
        if value in ("nan", "inf", "-inf"):
            return ["nan ", "infinite", [], {}, True]
        return [1, 1.5, [], {}, True, ["x"]]
    if isinstance(value, int):
        if norm in FLOAT_SLOTS:
            return ["one", [], {}, True]
        return ["one", "1.5", [], {}, True, 1.5, 2**63, -2**63 - 1]
    if isinstance(value, float):
        return ["1.5x", "nan2", [], {}, True, [1.0]]
    return [True]      # None: no field that may be null takes a boolean


def wrong_type_cases() -> list:
    """(reason, frame, expected to be refused) with one value replaced by one of another type."""
    cases = []
    for frame, path, norm, value in _fields():
        kind = frame["type"]
        for wrong in _wrong_values(norm, value):
            if norm in ANY_SCALAR and not isinstance(wrong, (list, dict)):
                cases.append((f"{kind}: {norm} = {wrong!r}", _with(frame, path, wrong), False))
                continue
            cases.append((f"{kind}: {norm} = {wrong!r}", _with(frame, path, wrong), True))
        if value is not None:
            nullable = norm in NULLABLE.get(kind, ())
            cases.append((f"{kind}: {norm} = null", _with(frame, path, None), not nullable))
    return cases


def extra_field_cases() -> list:
    """(reason, frame, False): an unknown field added to each object (a newer sender): accepted."""
    cases = []
    for frame, path, norm, value in _fields(per_path=1):
        if isinstance(value, dict) and norm not in MAPS:
            cases.append((f"{frame['type']}: {norm} with an extra field",
                          _with(frame, path, dict(value, extra_field={"new": [1, "two", None]})), False))
    for _, frame in real_frames():
        cases.append((f"{frame['type']} with an extra top-level field", dict(frame, added_later=1), False))
    return cases


def _check(cases) -> list:
    """The cases whose outcome is wrong: refused when it should pass, passed when it should be
    refused, or anything but FrameError raised."""
    wrong = []
    for reason, frame, refuse in cases:
        data = line(frame)
        try:
            message = wire.decode_message(data)
        except FrameError as error:
            if not refuse:
                wrong.append(f"{reason}: refused ({error})")
            elif not str(error) or len(str(error)) > 300:
                wrong.append(f"{reason}: reason {str(error)!r}")
            continue
        except BaseException as error:   # noqa: BLE001 - the point of the test
            wrong.append(f"{reason}: raised {type(error).__name__}: {error}")
            continue
        if refuse:
            wrong.append(f"{reason}: accepted")
            continue
        try:
            consume(message)
        except Exception as error:      # noqa: BLE001
            wrong.append(f"{reason}: accepted, then the front end raised {type(error).__name__}: {error}")
    return wrong


def test_each_required_field_missing_is_refused_and_optional_ones_are_not():
    cases = missing_field_cases()
    assert len(cases) > 150
    assert sum(refuse for _, _, refuse in cases) > 140
    assert _check(cases) == []


def test_missing_field_is_named_in_the_reason():
    snapshot = dict(real_frames())["xor step 5"]
    frame = _with(snapshot, ("snapshot", "step"), remove=True)
    with pytest.raises(FrameError, match=r"^snapshot frame: missing field 'step'"):
        wire.decode_message(line(frame))
    hello = _with(dict(real_frames())["xor hello"], ("model", "params"), remove=True)
    with pytest.raises(FrameError, match="hello frame: missing field 'params'") as caught:
        wire.decode_message(line(hello))
    assert caught.value.kind == "hello"


def test_each_value_of_the_wrong_type_is_refused():
    cases = wrong_type_cases()
    assert len(cases) > 1000
    assert _check(cases) == []


def test_unknown_fields_are_allowed_and_skipped():
    cases = extra_field_cases()
    assert len(cases) > 40
    assert _check(cases) == []


def test_mismatched_lengths_are_refused():
    history = dict(real_frames())["xor history"]
    series = history["series"]
    name = next(k for k in series if k != "step")
    short = _with(history, ("series", name), series[name][:-1])
    with pytest.raises(FrameError, match="history frame: series"):
        wire.decode_message(line(short))
    snapshot = dict(real_frames())["xor initial snapshot"]
    hist = next(iter(snapshot["snapshot"]["histograms"]))
    counts, edges = snapshot["snapshot"]["histograms"][hist]
    for bad in ([counts, edges[:-1]], [counts + [1], edges], [counts, []]):
        with pytest.raises(FrameError, match="histogram"):
            wire.decode_message(line(_with(snapshot, ("snapshot", "histograms", hist), bad)))
    for bad in ([counts], [counts, edges, edges], [[-1] + counts[1:], edges], [[1.5] + counts[1:], edges]):
        with pytest.raises(FrameError):
            wire.decode_message(line(_with(snapshot, ("snapshot", "histograms", hist), bad)))


def test_array_statistics_are_fixed_length_arrays():
    frame = dict(real_frames())["xor step-into trace"]
    ops = frame["snapshot"]["trace"]["ops"]
    i = next(i for i, op in enumerate(ops) if op["value"] is not None)
    stats = ops[i]["value"]
    for bad in (stats[:-1], stats + [0], [stats[0], *stats[1:5], -1, 0], [[-2], *stats[1:]], [1, *stats[1:]],
                [stats[0], "x", *stats[2:]], [stats[0], *stats[1:5], 1.5, 0]):
        with pytest.raises(FrameError):
            wire.decode_message(line(_with(frame, ("snapshot", "trace", "ops", i, "value"), bad)))


# -- broken bytes --------------------------------------------------------------------------------------

def _sample_cuts(n: int, k: int, rng: random.Random) -> list:
    if n <= k:
        return list(range(n))
    return sorted(set([0, 1, n - 1, n - 2] + rng.sample(range(n), k)))


def truncated_frames(per_frame: int = 60) -> list:
    rng = random.Random(0)
    out = []
    for label, frame in real_frames():
        data = line(frame).rstrip(b"\n")
        for cut in _sample_cuts(len(data), per_frame, rng):
            out.append((f"{label} cut at {cut}", data[:cut]))
    return out


def test_every_truncated_frame_is_refused():
    cases = truncated_frames()
    assert len(cases) > 1000
    wrong = []
    for reason, data in cases:
        try:
            wire.decode_message(data)
            wrong.append(f"{reason}: accepted")
        except FrameError:
            pass
        except BaseException as error:  # noqa: BLE001
            wrong.append(f"{reason}: {type(error).__name__}")
    assert wrong == []


INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80",
                b"\xc3", b"\xf0\x9f\x98"]


def invalid_utf8_frames() -> list:
    """Real frames with invalid UTF-8 put inside a string value, and in the middle of the frame."""
    out = []
    for label, frame in real_frames():
        data = line(frame)
        quote = data.index(b'"', data.index(b":"))    # the start of the first string value or key
        for bad in INVALID_UTF8:
            out.append((f"{label}: {bad!r} in a string", data[:quote + 1] + bad + data[quote + 1:]))
            middle = len(data) // 2
            out.append((f"{label}: {bad!r} in the middle", data[:middle] + bad + data[middle:]))
    out.append(("log text not UTF-8", b'{"type":"log","stream":"stdout","text":"caf\xe9"}'))
    return out


def test_invalid_utf8_is_refused():
    cases = invalid_utf8_frames()
    assert len(cases) > 400
    for reason, data in cases:
        with pytest.raises(FrameError):
            wire.decode_message(data)
    with pytest.raises(FrameError, match="UTF-8"):
        wire.decode_message('{"type":"log","stream":"stdout","text":"\ud800"}')


def deep_frames() -> list:
    n = 100_000
    return [
        ("100k [", b"[" * n),
        ("100k [ closed", b"[" * n + b"]" * n),
        ("100k {", b'{"a":' * n),
        ("100k { closed", b'{"a":' * n + b"1" + b"}" * n),
        ("100k mixed", b'[{"a":' * (n // 2)),
        ("deep unknown field", b'{"type":"bye","x":' + b"[" * n + b"]" * n + b"}"),
        ("deep unknown object", b'{"type":"log","stream":"s","text":"t","x":' + b'{"a":' * n + b"0" + b"}" * n + b"}"),
        ("deep where a number goes", b'{"type":"history","series":{"step":' + b"[" * n + b"]" * n + b"}}"),
        ("one past the limit", b'{"type":"bye","x":' + b"[" * wire.MAX_DEPTH + b"]" * wire.MAX_DEPTH + b"}"),
    ]


@pytest.mark.parametrize("reason,data", deep_frames(), ids=[r for r, _ in deep_frames()])
def test_deep_nesting_is_refused_before_parsing(reason, data):
    with pytest.raises(FrameError, match="nested too deeply"):
        wire.decode_message(data)
    with pytest.raises(FrameError):
        wire.decode_command(data[:wire.MAX_COMMAND_BYTES])


def test_nesting_up_to_the_limit_and_brackets_in_strings_pass():
    depth = wire.MAX_DEPTH - 1     # the frame's own object is one level
    assert wire.decode_message(b'{"type":"bye","x":' + b"[" * depth + b"]" * depth + b"}") == wire.ByeFrame()
    for text in ("[" * 100_000, "{" * 100_000, '\\"' + "[" * 1000, "\\\\" * 100 + "[" * 1000, "]" * 500 + "[" * 500):
        frame = {"type": "log", "stream": "stdout", "text": text}
        assert wire.decode_message(line(frame)) == wire.LogFrame(**{k: v for k, v in frame.items() if k != "type"})


def _reference_depth(data: bytes) -> int:
    """Depth by walking the text byte by byte (the slow, obvious way)."""
    depth = deepest = 0
    inside = escaped = False
    for b in data:
        c = chr(b)
        if inside:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                inside = False
        elif c == '"':
            inside = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='[]{}"\\ab\n'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='[]{}"\\k'), inner, max_size=4),
    max_leaves=200)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_nesting_depth_matches_a_byte_by_byte_count(value):
    data = json.dumps(value).encode()
    expected = _reference_depth(data)
    assert wire.nesting_depth(data, limit=10**6) == expected
    got = wire.nesting_depth(data, limit=3)
    assert got == expected if expected <= 3 else got > 3


def test_nesting_depth_counts_deep_values_exactly():
    for value in ([[["a[", {"k]": ["\\", "\"[["]}]]], {"a": [{"b": [[[1]]]}]}, "[[[[", [[]] * 100, "\\\"]]"):
        data = json.dumps(value).encode()
        assert wire.nesting_depth(data) == _reference_depth(data)
    value = x = []
    for _ in range(200):       # each level: a string of brackets and escapes, then the next level
        inner = []
        x += ["[\\\"{", inner]
        x = inner
    data = json.dumps(value).encode()
    assert _reference_depth(data) == 201
    assert wire.nesting_depth(data, limit=10**6) == 201
    assert wire.nesting_depth(data) > wire.MAX_DEPTH


def test_frames_over_the_size_limit_are_refused():
    limit = wire.MAX_FRAME_BYTES
    head, tail = b'{"type":"log","stream":"stdout","text":"', b'"}'
    at_limit = head + b"x" * (limit - len(head) - len(tail)) + tail
    assert len(at_limit) == limit
    assert kind_of(wire.decode_message(at_limit + b"\n")) == "log"
    over = head + b"x" * (limit + 1 - len(head) - len(tail)) + tail
    with pytest.raises(FrameError, match=r"frame too large \(\d+ bytes > \d+\)"):
        wire.decode_message(over)
    with pytest.raises(FrameError, match="too large"):
        wire.decode_message(b" " * (limit + 10))


def test_the_size_limit_has_room_for_a_large_run():
    # a history of 240 points for 1,000 series of full-precision floats is about 5 MB
    series = {"step": list(range(240))}
    for i in range(1000):
        series[f"layers.{i}.weight.grad_norm"] = [1 / 3 + j * 1e-7 for j in range(240)]
    data = line({"type": "history", "series": series})
    assert 4e6 < len(data) < wire.MAX_FRAME_BYTES / 4
    assert wire.decode_message(data).series.keys() == series.keys()


def other_malformed_messages() -> list:
    return [
        ("empty", b""), ("blank", b"   \n"), ("null", b"null"), ("a number", b"1"), ("a string", b'"hello"'),
        ("an array", b'[{"type":"bye"}]'), ("no type", b'{"snapshot":{}}'), ("unknown type", b'{"type":"nope"}'),
        ("type not a string", b'{"type":1}'), ("type null", b'{"type":null}'), ("type a list", b'{"type":["bye"]}'),
        ("a command as a message", b'{"cmd":"run"}'), ("two frames on a line", b'{"type":"bye"}{"type":"bye"}'),
        ("NaN literal", b'{"type":"log","stream":"s","text":NaN}'),
        ("NaN literal where a number goes", b'{"type":"history","series":{"step":[1],"loss":[NaN]}}'),
        ("Infinity literal", b'{"type":"history","series":{"step":[1],"loss":[Infinity]}}'),
        ("a number out of range", b'{"type":"history","series":{"step":[1],"loss":[1e999]}}'),
        ("a huge integer", b'{"type":"history","series":{"step":[' + b"9" * 5000 + b']}}'),
        ("a huge integer in an unknown field", b'{"type":"bye","x":' + b"9" * 5000 + b"}"),
        ("a huge float in an unknown field", b'{"type":"bye","x":1e999}'),
        ("a huge step", b'{"type":"state","state":"running","stop":{"step":' + b"9" * 30 +
         b',"reason":"r","detail":"d"}}'),
        ("trailing comma", b'{"type":"bye",}'), ("single quotes", b"{'type':'bye'}"),
        ("a control character in a string", b'{"type":"log","stream":"s","text":"a\x01b"}'),
        ("a bad escape", b'{"type":"log","stream":"s","text":"\\x41"}'),
        ("a lone surrogate escape in a frame type", b'{"type":"\\ud800"}'),
        ("a null byte", b'{"type":"bye"}\x00'),
        ("stop with fields missing", b'{"type":"state","state":"stopped","stop":{"step":1}}'),
        ("model of the wrong shape", b'{"type":"hello","model":{"name":"m","params":[1,2]}}'),
        ("model a list", b'{"type":"hello","model":[]}'),
        ("breakpoints not a list", b'{"type":"breakpoints","items":{"id":1}}'),
        ("report ok a string", b'{"type":"report","path":"p","ok":"yes"}'),
        ("series not a dict", b'{"type":"history","series":[[1,2]]}'),
        ("series values words", b'{"type":"history","series":{"step":[1],"loss":["one"]}}'),
    ] + [(f"not a frame at all: {x!r}", x) for x in (5, None, 1.5, ["x"], {"type": "bye"}, object())]


def test_other_malformed_messages_are_refused():
    for reason, data in other_malformed_messages():
        with pytest.raises(FrameError):
            wire.decode_message(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_nothing_but_frame_error(data):
    _decode_or_refuse(data)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "snapshot", "model", "series", "state", "stop", "items",
                                        "message", "stream", "text", "path", "ok", "kind", "cmd", "x"]),
                       _json, max_size=5),
       st.sampled_from([t.__struct_config__.tag for t in wire.Message.__args__] + [None]))
def test_random_objects_raise_nothing_but_frame_error(value, kind):
    if kind is not None:
        value = dict(value, type=kind)
    _decode_or_refuse(json.dumps(value).encode())


@functools.lru_cache(maxsize=1)
def _mutable_frames() -> tuple:
    keep = {"xor step-into trace", "xor breakpoint hit", "nan stop snapshot", "bayes snapshot", "xor history",
            "xor hello", "newton snapshot", "xor state paused", "nan state stopped", "xor breakpoints", "report ok",
            "log"}
    return tuple(line(f).rstrip(b"\n") for label, f in real_frames() if label in keep)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_corrupted_real_frames_are_refused_or_usable(data):
    """One to three bytes of a real frame changed, removed or added: refused with FrameError, or,
    where the result is still a valid frame, usable by the front end."""
    frames = _mutable_frames()
    raw = bytearray(data.draw(st.sampled_from(frames)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        how = data.draw(st.sampled_from(["set", "delete", "insert"]))
        byte = data.draw(st.sampled_from(list(b'[]{}":,0-9.e"nul\\ax') + [0xFF, 0x00, 0x80]))
        if how == "set":
            raw[at] = byte
        elif how == "delete":
            del raw[at]
        else:
            raw.insert(at, byte)
    _decode_or_refuse(bytes(raw))


def _decode_or_refuse(data) -> None:
    try:
        message = wire.decode_message(data)
    except FrameError:
        return
    assert isinstance(message, wire.Message.__args__)
    consume(message)


# -- commands ----------------------------------------------------------------------------------------

VALID_COMMANDS = [
    ({"cmd": "run"}, {"cmd": "run"}),
    ({"cmd": "pause"}, {"cmd": "pause"}),
    ({"cmd": "step"}, {"cmd": "step", "n": 1}),
    ({"cmd": "step", "n": 1}, {"cmd": "step", "n": 1}),
    ({"cmd": "step", "n": 250}, {"cmd": "step", "n": 250}),
    ({"cmd": "step", "n": wire.MAX_STEPS}, {"cmd": "step", "n": wire.MAX_STEPS}),
    ({"cmd": "step_into"}, {"cmd": "step_into"}),
    ({"cmd": "lr", "value": 0.01}, {"cmd": "lr", "value": 0.01}),
    ({"cmd": "lr", "value": 1}, {"cmd": "lr", "value": 1.0}),
    ({"cmd": "lr", "value": -0.5}, {"cmd": "lr", "value": -0.5}),   # the session refuses it, with its reason
    ({"cmd": "lr_scale", "factor": 0.5}, {"cmd": "lr_scale", "factor": 0.5}),
    ({"cmd": "reg", "kind": "L2", "lam": 0.001}, {"cmd": "reg", "kind": "L2", "lam": 0.001}),
    ({"cmd": "reg", "kind": "none", "lam": None}, {"cmd": "reg", "kind": "none", "lam": None}),
    ({"cmd": "reg", "kind": "L1"}, {"cmd": "reg", "kind": "L1", "lam": None}),
    ({"cmd": "break_add", "text": "loss > 2 and step > 10"}, {"cmd": "break_add", "text": "loss > 2 and step > 10"}),
    ({"cmd": "break_add", "text": "[{\"]"}, {"cmd": "break_add", "text": "[{\"]"}),
    ({"cmd": "break_remove", "id": 3}, {"cmd": "break_remove", "id": 3}),
    ({"cmd": "stop"}, {"cmd": "stop"}),
    ({"cmd": "quit"}, {"cmd": "quit"}),
    ({"cmd": "run", "sent_by": "a newer interface"}, {"cmd": "run"}),
]


@pytest.mark.parametrize("command,expected", VALID_COMMANDS, ids=[json.dumps(c) for c, _ in VALID_COMMANDS])
def test_valid_commands_pass(command, expected):
    text = json.dumps(command)
    for form in (text, text + "\n", text.encode(), text.encode() + b"\r\n"):
        assert wire.decode_command(form) == expected


def test_unknown_command_fields_are_skipped_unread():
    # whatever they hold (a message is read as JSON whole before it is typed, so there a number
    # beyond what JSON decoding gives is refused)
    assert wire.decode_command('{"cmd":"run","x":' + "9" * 5000 + ',"y":{"z":[1e999]}}') == {"cmd": "run"}
    with pytest.raises(FrameError):
        wire.decode_message('{"type":"bye","x":' + "9" * 5000 + "}")


def test_what_the_interface_sends_passes():
    from calcml.tui.backend import Backend

    class Recorder(Backend):
        def __init__(self):
            super().__init__()
            self.sent = []

        def send(self, command):
            self.sent.append(json.loads(wire.encode(command)))

    b = Recorder()
    b.run()
    b.pause()
    b.step()
    b.step(7)
    b.step_into()
    b.set_lr(0.05)
    b.scale_lr(2.0)
    b.set_regularizer("L1", 0.01)
    b.set_regularizer("none")
    b.add_breakpoint("step 5")
    b.remove_breakpoint(1)
    b.stop()
    b.send({"cmd": "quit"})
    assert len(b.sent) == 13
    for command in b.sent:
        assert wire.decode_command(wire.encode(command)) == dict(command)


_FIELDS = {"step": {"n": 3}, "lr": {"value": 0.1}, "lr_scale": {"factor": 2.0}, "reg": {"kind": "L2", "lam": 0.1},
           "break_add": {"text": "step 3"}, "break_remove": {"id": 1}}
_WRONG = {
    "n": [0, -1, -(10**20), wire.MAX_STEPS + 1, 10**30, 2**63, 1.5, 1e3, "3", True, None, [], {}, [3]],
    "value": ["0.1", None, True, [], {}, [0.1], 10**400, "nan", "inf"],
    "factor": ["2", None, False, [], {}],
    "kind": [1, None, [], {}, True, ["L1"]],
    "lam": ["0.1", True, [], {}, 10**400],
    "text": [1, None, [], {}, True, ["step 3"]],
    "id": [1.5, "1", None, True, [], {}, 2**63, -(2**63) - 1, 10**30],
}


def malformed_commands() -> list:
    cases = []
    for name, fields in _FIELDS.items():
        for field, good in fields.items():
            for wrong in _WRONG[field]:
                cases.append((f"{name} {field}={wrong!r}"[:80], json.dumps(dict(fields, cmd=name, **{field: wrong}))))
            if field not in ("n", "lam"):
                rest = {k: v for k, v in fields.items() if k != field}
                cases.append((f"{name} without {field}", json.dumps(dict(rest, cmd=name))))
    cases += [(f"{name} with a float written out of range", f'{{"cmd":"{name}","{field}":1e999}}')
              for name, field in (("lr", "value"), ("lr_scale", "factor"), ("reg", "lam"))]
    cases += [
        ("no cmd", '{"n":1}'), ("unknown cmd", '{"cmd":"format_disk"}'), ("cmd not a string", '{"cmd":1}'),
        ("cmd null", '{"cmd":null}'), ("cmd a list", '{"cmd":["run"]}'), ("cmd an object", '{"cmd":{"run":1}}'),
        ("a list", '["run"]'), ("a string", '"run"'), ("null", "null"), ("empty", ""), ("blank", " \n"),
        ("a message as a command", '{"type":"bye"}'), ("truncated", '{"cmd":"step","n":'),
        ("two commands on a line", '{"cmd":"run"}{"cmd":"pause"}'), ("NaN literal", '{"cmd":"lr","value":NaN}'),
        ("Infinity literal", '{"cmd":"lr","value":Infinity}'), ("invalid UTF-8", b'{"cmd":"break_add","text":"\xff"}'),
        ("lone surrogate", '{"cmd":"break_add","text":"\ud800"}'),
        ("deeply nested", "[" * 100_000), ("deeply nested object", '{"a":' * 10_000),
        ("deep unknown field", '{"cmd":"run","x":' + "[" * 1000 + "]" * 1000 + "}"),
        ("deep field", '{"cmd":"break_add","text":' + "[" * 200 + "]" * 200 + "}"),
        ("huge", '{"cmd":"break_add","text":"' + "x" * wire.MAX_COMMAND_BYTES + '"}'),
        ("huge padding", '{"cmd":"run"}' + " " * wire.MAX_COMMAND_BYTES),
        ("huge number", '{"cmd":"step","n":' + "9" * 50_000 + "}"),
    ]
    cases += [(f"not text: {x!r}", x) for x in (5, None, ["x"], {"cmd": "run"})]
    return cases


def test_malformed_commands_are_refused():
    cases = malformed_commands()
    assert len(cases) > 90
    wrong = []
    for reason, data in cases:
        try:
            got = wire.decode_command(data)
            wrong.append(f"{reason}: accepted as {got}")
        except FrameError as error:
            assert str(error)
        except BaseException as error:  # noqa: BLE001
            wrong.append(f"{reason}: {type(error).__name__}: {error}")
    assert wrong == []


def test_command_reasons():
    with pytest.raises(FrameError, match=r"^step command: expected int >= 1") as caught:
        wire.decode_command('{"cmd":"step","n":0}')
    assert caught.value.kind == "step"
    with pytest.raises(FrameError, match="unknown command 'nope'"):
        wire.decode_command('{"cmd":"nope"}')
    with pytest.raises(FrameError, match=r"command too large \(\d+ bytes > 65536\)"):
        wire.decode_command('{"cmd":"break_add","text":"' + "x" * 70_000 + '"}')
    with pytest.raises(FrameError, match="nested too deeply"):
        wire.decode_command("[" * 50_000)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_random_commands_raise_nothing_but_frame_error(data):
    try:
        command = wire.decode_command(data)
    except FrameError:
        return
    assert command["cmd"] in _COMMAND_NAMES


_COMMAND_NAMES = {t.__struct_config__.tag for t in wire.Command.__args__}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(_COMMAND_NAMES)),
       st.dictionaries(st.sampled_from(["n", "value", "factor", "kind", "lam", "text", "id", "x"]), _json, max_size=3))
def test_random_command_fields_raise_nothing_but_frame_error(name, fields):
    try:
        command = wire.decode_command(json.dumps(dict(fields, cmd=name)))
    except FrameError:
        return
    # what passed has the declared types
    assert command["cmd"] == name
    if name == "step":
        assert type(command["n"]) is int and 1 <= command["n"] <= wire.MAX_STEPS
    for key in ("value", "factor"):
        if key in command:
            assert type(command[key]) is float and math.isfinite(command[key])
    if name == "reg":
        assert isinstance(command["kind"], str) and (command["lam"] is None or type(command["lam"]) is float)
    if name == "break_add":
        assert isinstance(command["text"], str)
    if name == "break_remove":
        assert type(command["id"]) is int


def test_schemas_are_msgspec_structs():
    # decoded in C by msgspec: the union is tagged by "type" (messages) and "cmd" (commands)
    assert all(issubclass(t, msgspec.Struct) for t in wire.Message.__args__ + wire.Command.__args__)
    assert {t.__struct_config__.tag_field for t in wire.Message.__args__} == {"type"}
    assert {t.__struct_config__.tag_field for t in wire.Command.__args__} == {"cmd"}
