"""Curvature in the debugger: λ_max, tr H, diag H, the learning-rate edge and lr_too_large, and
closure-driven optimisers (Newton), all checked against exact answers from numpy."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml.debug import Session, SessionConfig, load_model_file
from calcml.debug import curvatureprobe
from calcml.debug.report import build_report
from helpers import make_spec, snapshot_over_the_wire

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


def quadratic(lr_factor, momentum=0.0, steps=100, nesterov=False, config=None):
    """Linear regression with the mean squared error: L(w) = mean((Xw − y)²), a quadratic whose
    Hessian is exactly H = 2XᵀX/n. The lr is `lr_factor` × the exact stability edge."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 4)) * np.array([1.0, 2.0, 0.5, 1.5])
    y = X @ rng.standard_normal((4, 1))
    H = 2 * X.T @ X / len(X)
    lam = np.linalg.eigvalsh(H)[-1]
    if momentum == 0:
        edge = 2 / lam
    elif nesterov:
        edge = 2 * (1 + momentum) / ((1 + 2 * momentum) * lam)
    else:
        edge = 2 * (1 + momentum) / lam
    cm.manual_seed(0)
    model = cm.nn.Linear(4, 1, bias=False)
    opt = cm.optim.SGD(model.parameters(), lr=lr_factor * edge, momentum=momentum, nesterov=nesterov)
    spec = make_spec(model, F.mse_loss, (X, y), optimizer=opt, steps=steps, name="quadratic")
    return Session(spec, config), H, edge


def starts(session, kind):
    return [e for e in session.warnings if e.kind == kind and e.event == "start"]


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.5, True)])
def test_lr_too_large_fires_at_1_1_times_the_edge_and_not_at_0_9(momentum, nesterov):
    past, H, edge = quadratic(1.1, momentum, nesterov=nesterov)
    past.run_to_end()
    (event,) = starts(past, "lr_too_large")
    assert event.step == 1                              # at once, from the first measurement
    assert event.threshold == pytest.approx(edge, rel=1e-8)
    assert f"{edge:.3g}" in event.message and "λ_max" in event.message
    before, _, _ = quadratic(0.9, momentum, nesterov=nesterov)
    before.run_to_end()
    assert not starts(before, "lr_too_large")
    # and the edge is where training really turns: 0.9x converges, 1.1x diverges
    assert before.snapshot.loss < 1e-3 * before.history.series("loss")[0]
    assert past.snapshot.loss > past.history.series("loss")[0]
    # flagged before it blew up: the loss at the warning had not yet grown past its start
    assert past.history.series("loss")[0] >= past.history.series("loss")[event.step - 1]


def test_lambda_max_trace_and_diagonal_against_the_exact_hessian():
    config = SessionConfig(curvature_samples=400)
    s, H, edge = quadratic(0.5, steps=3, config=config)
    s.run_to_end()
    c = s.curvature_history[0]
    assert c.lambda_max == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-8)
    assert c.lr_edge == pytest.approx(edge, rel=1e-8) and c.edge_formula == "2/λ_max"
    assert abs(c.trace - np.trace(H)) <= 3 * c.trace_se and c.trace_se > 0
    assert c.hessian_diag["weight"] == pytest.approx(np.mean(np.diag(H)), rel=0.1)
    assert c.n_params == 4
    p = s.snapshot.layers[0].params["weight"]
    assert p.hessian_diag == c.hessian_diag["weight"]


def test_l2_penalty_is_part_of_the_measured_curvature():
    s, H, _ = quadratic(0.5, steps=2)
    s.regularizer = cm.reg.L2(0.3)                       # λ‖θ‖²: adds 2λI to H
    s.run_to_end()
    assert s.curvature.lambda_max == pytest.approx(np.linalg.eigvalsh(H)[-1] + 0.6, rel=1e-8)


def test_measured_every_k_steps_and_reported():
    s, _, _ = quadratic(0.5, steps=60, config=SessionConfig(curvature_every=25, curvature_budget=None))
    s.run_to_end()
    assert [c.step for c in s.curvature_history] == [1, 26, 51]
    report = build_report(s)
    assert [c["step"] for c in report["curvature"]] == [1, 26, 51]
    assert set(report["curvature"][0]) >= {"lambda_max", "trace", "lr_edge"}
    lam = report["history"]["curvature.lambda_max"]
    assert [i + 1 for i, v in enumerate(lam) if v is not None] == [1, 26, 51]


def test_the_budget_spaces_measurements_by_their_cost(monkeypatch):
    """With a budget of 10%, a measurement that costs as much as 10 training steps is followed by
    100 steps of training before the next one, even though curvature_every asks for 5."""
    from calcml.debug import schedule
    from calcml.debug import session as session_module
    clock = [0.0]

    class FakeTime:
        @staticmethod
        def perf_counter():
            return clock[0]

    monkeypatch.setattr(schedule, "time", FakeTime)
    real_measure = curvatureprobe.measure

    def slow_measure(*args, **kwargs):
        clock[0] += 10.0                      # a measurement costs 10 s
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(curvatureprobe, "measure", slow_measure)
    original = session_module.Session._train_step

    def one_second_step(self, traced):
        clock[0] += 1.0                       # a training step costs 1 s
        return original(self, traced)

    monkeypatch.setattr(session_module.Session, "_train_step", one_second_step)
    s, _, _ = quadratic(0.5, steps=250, config=SessionConfig(curvature_every=5, curvature_budget=0.1))
    s.run_to_end()
    assert [c.step for c in s.curvature_history] == [1, 101, 201]


def test_lowering_the_lr_clears_the_warning():
    s, _, edge = quadratic(1.1, steps=40)
    s.step(3)
    for _ in range(3):
        s.tick()
    assert [e.event for e in s.warnings if e.kind == "lr_too_large"] == ["start"]
    s.scale_lr(0.5)
    s.run_to_end()
    assert [e.event for e in s.warnings if e.kind == "lr_too_large"] == ["start", "clear"]


def test_off_above_the_size_limit_with_a_reason():
    s, _, _ = quadratic(1.1, steps=5, config=SessionConfig(curvature_max_params=3))
    s.run_to_end()
    assert s.curvature is None and not starts(s, "lr_too_large")
    assert "4 parameters" in s.curvature_note and "3" in s.curvature_note
    assert build_report(s)["curvature"] == []


def test_a_failing_measurement_turns_curvature_off_and_training_goes_on(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no second derivative here")
    monkeypatch.setattr(curvatureprobe, "measure", broken)
    s, _, _ = quadratic(0.5, steps=10)
    s.run_to_end()
    assert s.state == "finished" and s.step_count == 10
    assert "no second derivative here" in s.curvature_note


def test_breakpoint_on_lambda_max():
    s, H, _ = quadratic(0.5, steps=10)
    s.add_breakpoint(f"lambda_max > {np.linalg.eigvalsh(H)[-1] * 0.99}")
    s.run_to_end()
    assert s.state == "paused" and s.step_count == 1


def test_adaptive_effective_step_is_the_optimisers_own():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 3)), rng.standard_normal((32, 1))
    cm.manual_seed(0)
    model = cm.nn.Linear(3, 1)
    opt = cm.optim.Adam(model.parameters(), lr=0.01)
    spec = make_spec(model, F.mse_loss, (X, y), optimizer=opt, steps=20, name="adam")
    s = Session(spec)
    s.run_to_end()
    w = s.snapshot.layers[0].params["weight"]
    # Adam after 20 steps: η / (√(v/(1−β2ᵗ)) + ε), from the optimiser's second-moment buffer
    v = opt.state[model.weight]["exp_avg_sq"]
    expected = 0.01 / (np.sqrt(v / (1 - 0.999 ** 20)) + 1e-8)
    assert w.effective_lr == pytest.approx(float(np.median(expected)), rel=1e-12)
    assert s.curvature.lr_edge is None and "Adam" in s.curvature.edge_formula


def test_newton_is_driven_through_a_closure_and_converges_quadratically():
    spec = load_model_file(str(SAMPLES / "newton_logreg.py"))
    s = Session(spec)
    s.run_to_end()
    g = s.history.series("newton.grad_norm")
    assert s.state == "finished" and g[0] > 1e-2
    first_tiny = int(np.argmax(g < 1e-10))
    assert g[first_tiny] < 1e-10 and first_tiny < 8      # a handful of iterations
    # quadratic convergence: ‖g_{k+1}‖ ≈ C‖g_k‖² on the way down
    for a, b in zip(g[2:first_tiny], g[3:first_tiny + 1]):
        assert b < 100 * a * a
    assert s.snapshot.optimizer_state["positive_definite"] is True
    # the same problem with gradient descent crawls
    sgd = load_model_file(str(SAMPLES / "newton_logreg.py"))
    sgd.optimizer = cm.optim.SGD(sgd.model.parameters(), lr=1.0)
    t = Session(dataclasses.replace(sgd, optimizer=sgd.optimizer))
    t.run_to_end()
    assert t.snapshot.layers[0].params["weight"].grad_norm > 1e-4


def test_curvature_and_optimizer_state_cross_the_wire():
    spec = load_model_file(str(SAMPLES / "newton_logreg.py"), steps=3)
    s = Session(spec)
    s.run_to_end()
    back = snapshot_over_the_wire(s.snapshot)
    assert back.curvature == s.snapshot.curvature
    assert back.optimizer_state["message"] == s.snapshot.optimizer_state["message"]
    assert back.optimizer_state["grad_norm"] == s.snapshot.optimizer_state["grad_norm"]
    assert back.layers[0].params["weight"].hessian_diag == s.snapshot.layers[0].params["weight"].hessian_diag
