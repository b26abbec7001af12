"""Snapshots as plain JSON-ready data and back: the format between a session and a front end.

Only numbers, strings, lists and dicts cross the wire (never pickle: a debugger must not
execute what it receives, and the same format can carry a remote run). NaN and infinities,
which JSON lacks, travel as the strings 'nan', 'inf' and '-inf'.
"""
from __future__ import annotations

import json
import math

import numpy as np

from .breakpoints import Breakpoint, Hit
from .bayesprobe import BayesStats
from .curvatureprobe import CurvatureStats
from .diagnostics import Condition, WarningEvent
from .probes import LayerStats, ParamStats
from .session import Snapshot, StopInfo
from .tracesummary import ArrayStats, OpSummary, TraceSummary


def _f(x):
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _unf(x):
    if x is None:
        return None
    return float(x)  # float('nan') / float('inf') read the strings back


def dumps(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def loads(line: str) -> dict:
    return json.loads(line)


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
        stop=StopInfo(**d["stop"]) if d["stop"] else None, hit=hit, histograms=histograms,
        trace=TraceSummary(tuple(_op_back(o) for o in d["trace"])) if d["trace"] else None,
        curvature=_curvature_back(d.get("curvature")), optimizer_state=_plain_back(d.get("optimizer_state")),
        bayes=_bayes_back(d.get("bayes")))


def history_to_wire(history, names=None, max_points: int = 240) -> dict:
    """The history's series, each thinned to at most `max_points` evenly spaced points
    (a plot is a few hundred columns wide at most). A series measured only every few steps
    (curvature, update ratios: NaN in between) keeps at each point the latest measurement since
    the point before, so thinning does not drop its measurements."""
    steps = history.series("step")
    keep = None
    if len(steps) > max_points:
        keep = np.linspace(0, len(steps) - 1, max_points).round().astype(int)
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
