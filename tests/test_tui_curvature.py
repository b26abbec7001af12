"""The curvature view (key h): λ_max, tr H and the lr edge against the lr, the Hessian diagonal per
parameter beside the optimiser's step, Newton's state; [ ] change the lr from the view; what it
says when curvature is off or not measured yet; throttled plots; snapshot images. The numbers on
screen are checked against the session's own measurements (in-process, deterministic)."""
from __future__ import annotations

import asyncio
import math

from msgspec.structs import replace
import numpy as np
import pytest

from calcml.debug import curvatureprobe
from calcml.debug.snapshot import CurvatureStats
from calcml.debug.history import History
from calcml.debug.snapshot import ParamStats
from calcml.tui.app import DebuggerApp
from calcml.tui.format import num
from calcml.tui.screens.curvature import CurvatureScreen
from calcml.tui.messages import StateChanged
from calcml.tui.text_curvature import curvature_lines, edge_verdict, newton_lines, param_rows
from calcml.tui.widgets.common import carried_forward, log_ticks
from calcml.tui.widgets.edge_plot import EdgePlot
from calcml.tui.widgets.newton_plot import NewtonPlot
from helpers import history_over_the_wire
from tui_helpers import SAMPLES, backend_with, local, plain

App = DebuggerApp


async def open_view(app, pilot) -> CurvatureScreen:
    await pilot.pause()
    await pilot.press("h")
    await pilot.pause()
    assert isinstance(app.screen, CurvatureScreen)
    return app.screen


def text_of(screen, selector: str) -> str:
    """A Static's text with its line breaks and runs of spaces as single spaces."""
    return " ".join(plain(screen.query_one(selector), width=200).split())


def all_params(snapshot) -> list:
    return [p for layer in snapshot.layers for p in layer.params.values()]


# ---------------------------------------------------------------------------------------------
# through the real app
# ---------------------------------------------------------------------------------------------

def test_h_opens_the_view_with_the_sessions_numbers_and_escape_or_h_close_it():
    backend = local("lr_edge.py", steps=3)
    c = backend.session.curvature
    lr = backend.session.lr
    assert c is not None and c.lr_edge is not None and lr > c.lr_edge   # the sample is past the edge

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            main = app.screen
            for key in ("escape", "h"):   # (q quits: tests/test_tui_keys.py)
                screen = await open_view(app, pilot)
                summary = text_of(screen, "#curv-summary")
                assert f"λ_max {num(c.lambda_max)}" in summary
                assert f"tr H {num(c.trace)} ± {num(c.trace_se, 2)}" in summary
                assert f"2/λ_max = {num(c.lr_edge)}" in summary and f"lr {num(lr)}" in summary
                assert f"{lr / c.lr_edge:.3g}× the edge" in summary and "past the edge" in summary
                assert f"|1 − η·λ_max| = {num(abs(1 - lr * c.lambda_max))}" in summary
                table = text_of(screen, "#curv-params")
                h = c.hessian_diag["weight"]
                for value in (h, 1 / h, lr, lr * h):
                    assert num(value) in table
                assert "Hᵢᵢ" in table and "1/Hᵢᵢ" in table
                assert not screen.query_one("#newton").display          # SGD: no Newton panel
                assert screen.query_one(EdgePlot).display
                await pilot.press(key)
                await pilot.pause()
                assert app.screen is main

    asyncio.run(scenario())


def test_lr_keys_in_the_view_halve_and_double_the_lr_and_the_warning_clears():
    backend = local("lr_edge.py", steps=2)
    lr = backend.session.lr
    edge = backend.session.curvature.lr_edge

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_view(app, pilot)
            assert "lr_too_large" in {c.kind for c in backend.state.snapshot.holding}
            await pilot.press("left_square_bracket")
            title = text_of(screen, "#curv-title")
            assert "÷2" in title and "from the next step" in title and "press n" in title
            backend.step(1)
            backend.pump(1)
            await pilot.pause(0.2)
            assert backend.session.lr == pytest.approx(lr / 2)
            assert "from the next step" not in text_of(screen, "#curv-title")
            summary = text_of(screen, "#curv-summary")
            assert f"lr {num(lr / 2)}" in summary and "inside the edge" in summary
            assert f"{lr / 2 / edge:.3g}× the edge" in summary
            backend.step(6)
            backend.pump(6)
            await pilot.pause(0.2)
            events = [(w.kind, w.event) for w in backend.state.warnings]
            assert ("lr_too_large", "start") in events and ("lr_too_large", "clear") in events
            await pilot.press("right_square_bracket")
            await pilot.press("right_square_bracket")
            assert "×4" in text_of(screen, "#curv-title")       # two presses before a step: ×4
            backend.step(1)
            backend.pump(1)
            await pilot.pause(0.2)
            assert backend.session.lr == pytest.approx(2 * lr)
            assert "past the edge" in text_of(screen, "#curv-summary")

    asyncio.run(scenario())


def test_the_lr_keys_are_disabled_once_training_has_ended():
    backend = local("newton_logreg.py", steps=12)
    assert backend.state.state == "finished"

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_view(app, pilot)
            assert screen.check_action("scale_lr", (0.5,)) is None
            await pilot.press("left_square_bracket")
            assert screen.lr_request is None

    asyncio.run(scenario())


@pytest.mark.parametrize("config, words", [
    ({"curvature_max_params": 3}, ["Curvature is off", "4 parameters", "limit of 3"]),
    ({"curvature_every": 0}, ["Curvature is off", "--curvature-every 0"]),
])
def test_curvature_off_says_why_and_shows_no_numbers(config, words):
    backend = backend_with("lr_edge.py", steps=2, **config)
    assert backend.session.curvature is None

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_view(app, pilot)
            summary = text_of(screen, "#curv-summary")
            for word in words:
                assert word in summary
            assert not screen.query_one("#curv-table").display
            assert not screen.query_one(EdgePlot).display and not screen.query_one("#curv-plots").display
            assert "λ_max" not in summary

    asyncio.run(scenario())


def test_before_the_first_step_it_says_when_the_first_measurement_comes():
    backend = local("lr_edge.py", steps=0)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_view(app, pilot)
            every = backend.session.curvature_every
            summary = text_of(screen, "#curv-summary")
            assert "Not measured yet" in summary and f"every {every} steps" in summary and "press n" in summary
            backend.step(1)                      # the first step measures: the numbers appear
            backend.pump(1)
            await pilot.pause(0.5)
            summary = text_of(screen, "#curv-summary")
            assert f"λ_max {num(backend.session.curvature.lambda_max)}" in summary
            assert screen.query_one("#curv-table").display and screen.query_one(EdgePlot).display

    asyncio.run(scenario())


def test_newton_panel_shows_the_optimisers_state_and_the_gradient_norm_plunging():
    backend = local("newton_logreg.py", steps=6)
    state = backend.session.optimizer.state_info

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_view(app, pilot)
            await pilot.pause(0.4)
            assert screen.query_one("#newton").display
            assert "Newton's method, step 6" in text_of(screen, "#newton-title")
            text = text_of(screen, "#newton-state")
            assert state["message"] in text
            for key in ("grad_norm", "newton_decrement", "condition_number", "damping_used"):
                assert num(state[key]) in text
            assert f"[{num(state['min_eigenvalue'])}, {num(state['max_eigenvalue'])}]" in text
            assert "positive definite yes" in text
            plot = screen.query_one(NewtonPlot)
            assert plot.display and plot.region.height > 0
            g = backend.state.history["newton.grad_norm"]
            assert g[-1] < 1e-6 * g[0]                       # quadratic convergence
            summary = text_of(screen, "#curv-summary")       # one measurement, no edge for Newton
            assert "No single lr edge for Newton" in summary
            table = text_of(screen, "#curv-params")
            assert "Hᵢᵢ" in table and "η" not in table and "step·Hᵢᵢ" not in table   # no step column

    asyncio.run(scenario())


def test_adam_shows_its_effective_step_beside_the_diagonal_newton_step():
    backend = backend_with("adam_vs_sgd.py", steps=20, curvature_every=100)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_view(app, pilot)
            table = text_of(screen, "#curv-params")
            assert "η/(√v̂+ε)" in table and "step·Hᵢᵢ" in table
            snap = backend.state.snapshot
            a, b = (next(p for p in all_params(snap) if p.name == n) for n in "ab")
            assert b.hessian_diag > 100 * a.hessian_diag                   # 900× the curvature along b
            assert b.effective_lr < a.effective_lr                         # ... so Adam steps less along b
            for p in (a, b):
                assert num(p.effective_lr) in table and num(p.effective_lr * p.hessian_diag) in table
            assert "Adam takes η/(√v̂+ε)" in table
            assert not screen.query_one(EdgePlot).display                 # no edge, one λ_max so far
            assert not screen.query_one("#curv-plots").display

    asyncio.run(scenario())


def test_plots_redraw_only_when_history_changes_and_at_most_every_0_3_s():
    backend = local("lr_edge.py", steps=2)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_view(app, pilot)
            now = [10.0]
            screen.clock = lambda: now[0]
            screen.plot_throttle.last = -math.inf
            draws = []
            real = screen._draw_plots
            screen._draw_plots = lambda state: (draws.append(now[0]), real(state))
            state = backend.state
            screen.on_state_changed(StateChanged(state, {"snapshot"}))
            assert draws == []
            screen.on_state_changed(StateChanged(state, {"history"}))
            assert draws == [10.0]
            for t in (10.1, 10.2):
                now[0] = t
                screen.on_state_changed(StateChanged(state, {"history", "snapshot"}))
            assert draws == [10.0] and screen.plot_throttle._timer is not None
            now[0] = 10.35
            screen.plot_throttle._fired()
            assert draws == [10.0, 10.35]

    asyncio.run(scenario())


def test_fake_snapshot_numbers_and_a_newton_state_show_as_given():
    backend = local("lr_edge.py", steps=1)
    snap = backend.state.snapshot
    curvature = CurvatureStats(step=7, lambda_max=40.0, trace=55.5, trace_se=1.25, lr_edge=0.05,
                               edge_formula="2(1+β)/λ_max, β = 0.9", hessian_diag={"weight": -2.0}, n_params=4)
    layers = tuple(replace(layer, params={k: replace(p, hessian_diag=-2.0) for k, p in layer.params.items()})
                   for layer in snap.layers)
    newton = {"step": 3, "grad_norm": 1e-9, "newton_decrement": 2e-9, "min_eigenvalue": -0.5,
              "max_eigenvalue": 4.0, "condition_number": math.inf, "positive_definite": False,
              "damping": 1e-4, "damping_used": 1.0, "damped": True, "step_norm": 0.01,
              "message": "damping raised to 1 (Levenberg–Marquardt)"}
    fake = replace(snap, lr=0.1, curvature=curvature, layers=layers, optimizer_state=newton)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_view(app, pilot)
            with backend.state.lock:
                backend.state.snapshot = fake
                backend.state._bump("snapshot")
            await pilot.pause(0.3)
            summary = text_of(screen, "#curv-summary")
            assert "λ_max 40" in summary and "tr H 55.5 ± 1.2" in summary and "measured at step 7" in summary
            assert "2(1+β)/λ_max, β = 0.9 = 0.05" in summary and "2× the edge" in summary
            assert "grows every step" in summary                  # momentum: no |1 − ηλ| factor
            table = text_of(screen, "#curv-params")
            assert "-2" in table and "no Newton step" in table   # Hᵢᵢ < 0: no 1/Hᵢᵢ
            text = text_of(screen, "#newton-state")
            assert "Levenberg–Marquardt" in text and "positive definite no" in text and "[-0.5, 4]" in text
            assert "damping used 1 (asked 1e-04, raised" in text.replace("1.00e-04", "1e-04")

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# what reaches the app
# ---------------------------------------------------------------------------------------------

def test_the_new_series_and_the_curvature_settings_reach_the_app():
    backend = local("newton_logreg.py", steps=3)
    history, model = backend.state.history, backend.state.model
    for name in ("lr", "curvature.lambda_max", "curvature.trace", "weight.hessian_diag", "newton.grad_norm",
                 "newton.newton_decrement", "newton.damping_used", "newton.min_eigenvalue"):
        assert name in history, name
    assert model["curvature_every"] == backend.session.curvature_every and model["curvature_note"] is None
    assert "curvature.lr_edge" in local("lr_edge.py", steps=1).state.history
    assert "a.effective_lr" in local("adam_vs_sgd.py", steps=1).state.history


def test_a_measurement_that_fails_mid_run_tells_the_app_why(monkeypatch):
    backend = local("lr_edge.py", steps=1)
    assert backend.state.model["curvature_note"] is None

    def broken(*args, **kwargs):
        raise RuntimeError("no second derivative here")
    monkeypatch.setattr(curvatureprobe, "measure", broken)
    backend.session.curvature_every = 1
    backend.step(1)
    backend.pump(1)
    assert "no second derivative here" in backend.state.model["curvature_note"]
    assert backend.state.model["curvature_every"] == 0


def test_thinning_the_history_keeps_measurements_taken_every_few_steps():
    history = History(20_000)
    for step in range(1, 10_001):
        values = {"loss": float(step)}
        if step % 100 == 1:
            values["curvature.lambda_max"] = float(step)
        history.record(step, values)
    sent = history_over_the_wire(history)
    assert len(sent["step"]) == 240
    measured = sent["curvature.lambda_max"][np.isfinite(sent["curvature.lambda_max"])]
    assert measured.tolist() == [float(s) for s in range(1, 10_001, 100)]   # all 100, none made up
    assert np.array_equal(sent["loss"], sent["step"])                        # dense series: as before


# ---------------------------------------------------------------------------------------------
# the pieces
# ---------------------------------------------------------------------------------------------

def _curvature(edge=0.1, formula="2/λ_max", lam=20.0):
    return CurvatureStats(step=1, lambda_max=lam, trace=30.0, trace_se=0.5, lr_edge=edge, edge_formula=formula)


def test_edge_verdict_bands():
    assert edge_verdict(0.05, _curvature())[2] == "green"
    assert edge_verdict(0.095, _curvature())[2] == "bold yellow"
    ratio, words, style = edge_verdict(0.11, _curvature())
    assert ratio == pytest.approx(1.1) and style == "bold red" and "|1 − η·λ_max| = 1.2" in words
    assert edge_verdict(0.1, _curvature(edge=None, formula="no single lr edge for Adam")) is None
    assert edge_verdict(0.1, None) is None


def test_param_rows_step_columns_follow_the_optimiser():
    sgd = ParamStats("w", (2,), 1.0, 0.0, 1.0, 1.0, 0.1, 0.1, 0.0, hessian_diag=4.0)
    headers, rows = param_rows([sgd], 0.6, "SGD", _curvature())
    assert headers == ["param", "Hᵢᵢ", "1/Hᵢᵢ", "η", "step·Hᵢᵢ"]
    assert [t.plain for t in rows[0]] == ["w", "4", "0.25", "0.6", "2.4"]
    assert rows[0][4].style == "bold red"                   # η·Hᵢᵢ ≥ 2: overshoots along w
    adam = replace(sgd, effective_lr=0.125)
    headers, rows = param_rows([adam], 0.6, "Adam", _curvature(edge=None))
    assert headers[3] == "η/(√v̂+ε)" and [t.plain for t in rows[0]][3:] == ["0.125", "0.5"]
    assert param_rows([adam], 0.6, "Adagrad", None)[0][3] == "η/(√s+ε)"
    headers, rows = param_rows([replace(sgd, hessian_diag=None)], 0.6, "Newton", _curvature(edge=None))
    assert headers == ["param", "Hᵢᵢ", "1/Hᵢᵢ"] and [t.plain for t in rows[0]] == ["w", "-", "-"]


def test_summary_and_newton_text_without_data():
    assert "Not measured yet" in curvature_lines(None, {"curvature_every": 25}).plain
    assert "every 25 steps" in curvature_lines(None, {"curvature_every": 25}).plain
    assert "‖g‖ -" in newton_lines({}).plain


def test_log_ticks_and_carried_forward():
    positions, labels = log_ticks(-16.3, -0.9)
    assert labels == [f"1e{k}" for k in positions] and positions[0] >= -16 and positions[-1] <= -1
    assert len(positions) <= 6
    positions, labels = log_ticks(math.log10(0.131), math.log10(0.144))
    assert labels[0] == "0.131" and labels[-1] == "0.144"
    assert log_ticks(-1.0, -1.0) == ([-1.0], ["0.1"])
    filled = carried_forward(np.array([np.nan, 2.0, np.nan, np.nan, 5.0, np.nan]))
    assert np.isnan(filled[0]) and filled[1:].tolist() == [2.0, 2.0, 2.0, 5.0, 5.0]


# ---------------------------------------------------------------------------------------------
# what it looks like (pytest-textual-snapshot; --snapshot-update to accept a change)
# ---------------------------------------------------------------------------------------------

def test_snapshot_curvature_lr_edge_after_halving_the_lr(snap_compare):
    backend = backend_with("lr_edge.py", steps=4, curvature_every=25)

    async def halve_and_train(pilot):
        await pilot.press("h")
        await pilot.press("left_square_bracket")      # the lr line drops below the edge
        await pilot.pause()
        backend.step(4)
        backend.pump(4)
        await pilot.pause(0.5)

    assert snap_compare(App(backend), run_before=halve_and_train, terminal_size=(120, 36))


def test_snapshot_curvature_lr_edge_80x24(snap_compare):
    app = App(backend_with("lr_edge.py", steps=4, curvature_every=25))
    assert snap_compare(app, press=["h"], terminal_size=(80, 24))
