"""The run report (`--json`), schema `calcml.report/1`.

A report is written whole or not at all: to a temporary file in the target's folder, then
renamed over the target, so a run that is killed while writing leaves the old file (or none),
never half of one. The target is checked before training starts (`check_target`).
"""
from __future__ import annotations

import json
import os
import stat

from .codec import for_json, plain

SCHEMA = "calcml.report/1"


class ReportTargetError(ValueError):
    """The --json target cannot be written: the message says why."""


def build_report(session, stopped=None) -> dict:
    """The report of `session`; `stopped` (a StopInfo) stands in for a run that ended without
    of its own (the interface quit, a signal); a run that finished or stopped keeps its own."""
    history = session.history.to_dict()   # already JSON-clean (None for NaN)
    snapshot = session.snapshot
    layers = snapshot.layers if snapshot is not None else ()
    if session.done:   # the run ended on its own: that is its outcome
        stopped = None
    stop = session.stop_info or stopped
    state = "stopped" if stopped is not None else session.state
    report = for_json({
        "schema": SCHEMA,
        "model": session.spec.path,
        "description": session.spec.description,
        "steps": session.step_count,
        "state": state,
        "stopped": plain(stop),
        "seed": session.spec.seed,
        "optimizer": type(session.optimizer).__name__,
        "lr": session.lr,
        "regularizer": {"kind": session.regularizer.kind, "lambda": session.regularizer.lam}
        if session.regularizer else None,
        "loss": None,
        "val_loss": None,
        "layers": [_layer(layer) for layer in layers],
        "history": None,
        "warnings": plain(list(session.warnings)),
        "breakpoints": [{"id": b.id, "breakpoint": b.text} for b in session.breakpoints],
        "curvature": plain(list(session.curvature_history)),
        "curvature_note": session.curvature_note,
        "batch_noise": plain(session.batch_noise),   # the latest measurement (its history: history["batch_noise"])
        "optimizer_state": plain(snapshot.optimizer_state) if snapshot is not None else None,
        **_bayes(session, history),
    })
    loss = history.get("loss", [])
    report["loss"] = loss
    report["val_loss"] = (history.get("val_loss") or [None] * len(loss)) if session.spec.val_data is not None \
        else None
    report["history"] = history
    return report


def _layer(layer) -> dict:
    """A layer as the record declares it, its chain-rule factor added; its parameters keyed by
    their short names, as in the layer."""
    out = plain(layer)
    out["grad_ratio"] = layer.grad_ratio
    for entry in out["params"].values():
        del entry["name"]
    return out


def _bayes(session, history: dict) -> dict:
    """The ELBO terms per recorded step and the posterior σ per layer (null without Bayesian layers)."""
    b = session.bayes
    if b is None:
        return {"elbo": None, "expected_log_likelihood": None, "kl": None, "posterior_sigma": None,
                "bayes": None}
    steps = len(history.get("step", []))
    terms = {key: history.get(key) or [None] * steps for key in ("elbo", "expected_log_likelihood", "kl")}
    return {**terms, "posterior_sigma": dict(b.posterior_sigma), "bayes": plain(b),
            "bayes_note": session.bayes_note}


def temporary_path(path: str, pid: int | None = None) -> str:
    """Where a report for `path` is written before it is renamed into place (one per process)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid() if pid is None else pid}.tmp")


def check_target(path: str) -> str:
    """The absolute path of a --json target that can be written, checked before any training:
    its folder exists and takes new files, and the target is not a folder, a device or a
    read-only file. Raises ReportTargetError with the reason."""
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise ReportTargetError(f"{path}: the folder {folder} does not exist")
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as error:
        raise ReportTargetError(f"{path}: {error.strerror}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise ReportTargetError(f"{path}: is a folder; give a file name for the report")
        if not stat.S_ISREG(info.st_mode):
            raise ReportTargetError(f"{path}: is not a regular file (a device or pipe); "
                                    "give a file name for the report")
        if not info.st_mode & 0o222 or not os.access(target, os.W_OK):
            raise ReportTargetError(f"{path}: is read-only; give another file name or make it writable")
    probe = temporary_path(target)
    try:   # the report goes to a new file in this folder, then is renamed: try making one
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ReportTargetError(f"{path}: cannot write in {folder}: {error.strerror}") from None
    return target


def write_text_atomically(path: str, text: str) -> None:
    """`text` into `path` whole, or nothing: a temporary file beside it, then a rename."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_report(session, path: str, stopped=None) -> None:
    # Compact JSON: the C encoder is several times faster than pretty-printing, which matters
    # when a person is waiting for a report of 10,000 steps after pressing q.
    text = json.dumps(build_report(session, stopped), separators=(",", ":"), allow_nan=False)
    write_text_atomically(path, text + "\n")
