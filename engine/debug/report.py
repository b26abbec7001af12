"""The run report (`--json`), schema `calcml.report/1`."""
from __future__ import annotations

import json
import math

SCHEMA = "calcml.report/1"


def _clean(value):
    """JSON has no NaN or Infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def build_report(session) -> dict:
    history = session.history.to_dict()
    snapshot = session.snapshot
    layers = snapshot.layers if snapshot is not None else ()
    return _clean({
        "schema": SCHEMA,
        "model": session.spec.path,
        "description": session.spec.description,
        "steps": session.step_count,
        "state": session.state,
        "stopped": session.stop_info.to_dict() if session.stop_info else None,
        "seed": session.spec.seed,
        "optimizer": type(session.optimizer).__name__,
        "lr": session.lr,
        "regularizer": {"kind": session.regularizer.kind, "lambda": session.regularizer.lam}
        if session.regularizer else None,
        "loss": history.get("loss", []),
        "val_loss": (history.get("val_loss") or [None] * len(history.get("loss", [])))
        if session.spec.val_data is not None else None,
        "layers": [layer.to_dict() for layer in layers],
        "history": history,
        "warnings": [w.to_dict() for w in session.warnings],
        "breakpoints": [{"id": b.id, "breakpoint": b.text} for b in session.breakpoints],
        "curvature": [c.to_dict() for c in session.curvature_history],
        "curvature_note": session.curvature_note,
        "optimizer_state": snapshot.optimizer_state if snapshot is not None else None,
        **_bayes(session, history),
    })


def _bayes(session, history: dict) -> dict:
    """The ELBO terms per recorded step and the posterior σ per layer (null without Bayesian layers)."""
    b = session.bayes
    if b is None:
        return {"elbo": None, "expected_log_likelihood": None, "kl": None, "posterior_sigma": None,
                "bayes": None}
    steps = len(history.get("step", []))
    terms = {key: history.get(key) or [None] * steps for key in ("elbo", "expected_log_likelihood", "kl")}
    return {**terms, "posterior_sigma": dict(b.posterior_sigma), "bayes": b.to_dict(),
            "bayes_note": session.bayes_note}


def write_report(session, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(build_report(session), f, indent=1)
        f.write("\n")
