"""The regularisation view (key r): 0/1/2 switch none/L1/L2, +/- double/halve λ, and the live
effect on each layer's weights (histogram now vs step 0, sparsity, ‖θ‖, data vs penalty
gradient), driven through the real app with an in-process session; and a snapshot image."""
from __future__ import annotations

import asyncio
import math
import os

import pytest

from calcml.debug import Session
from calcml.debug.loader import load_model_file
from calcml.tui.app import DebuggerApp
from calcml.tui.backend import LocalBackend
from calcml.tui.messages import StateChanged
from calcml.tui.screens.regularisation import DEFAULT_LAM, ParamPanel, RegularisationScreen, weight_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


App = DebuggerApp


def backend_for(name: str, steps: int = 5) -> LocalBackend:
    spec = load_model_file(os.path.join(ROOT, "sample_models", f"{name}.py"), seed=0)
    backend = LocalBackend(Session(spec))
    if steps:
        run_steps(backend, steps)
    return backend


def run_steps(backend, n: int) -> None:
    """n training steps, then publish once (as the worker does while running: it coalesces)."""
    backend.step(n)
    for _ in range(n):
        backend.session.tick()
    backend.pump(0)


async def train(backend, pilot, n: int = 2) -> None:
    if n <= 5:
        backend.step(n)
        backend.pump(n)       # publish after every step
    else:
        run_steps(backend, n)
    await pilot.pause(0.4)   # the app polls at 4 Hz; the panels redraw at most every 0.3 s


def weights_of(snapshot) -> list:
    return [p for layer in snapshot.layers for short, p in layer.params.items() if short == "weight"]


async def open_view(app, pilot) -> RegularisationScreen:
    await pilot.pause()
    await pilot.press("r")
    await pilot.pause()
    assert isinstance(app.screen, RegularisationScreen)
    return app.screen


def title_of(screen) -> str:
    return str(screen.query_one("#reg-title").content)


def test_keys_switch_the_regulariser_and_scale_lambda_in_the_live_session():
    backend = backend_for("deep_sigmoid", steps=3)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            main = app.screen
            screen = await open_view(app, pilot)
            assert backend.state.snapshot.regularizer == ("none", 0.0)
            assert "no regulariser" in title_of(screen)

            await pilot.press("2")
            assert "applies from the next step" in title_of(screen)   # paused: not in use yet
            await train(backend, pilot)
            snap = backend.state.snapshot
            assert snap.regularizer == ("L2", DEFAULT_LAM)
            for p in weights_of(snap):
                assert p.penalty_grad_norm > 0
                # 2λθ: the penalty's gradient norm is 2λ‖θ‖ (measured before this step's update)
                assert p.penalty_grad_norm == pytest.approx(2 * DEFAULT_LAM * p.weight_norm, rel=0.05)
            title = title_of(screen)
            assert "L2" in title and "λΣθ²" in title and "2λθ" in title and "applies from" not in title

            await pilot.press("plus")
            await train(backend, pilot)
            assert backend.state.snapshot.regularizer == ("L2", 2 * DEFAULT_LAM)
            await pilot.press("minus")
            await pilot.press("minus")
            await train(backend, pilot)
            assert backend.state.snapshot.regularizer == ("L2", DEFAULT_LAM / 2)

            await pilot.press("1")                      # L1 keeps the current λ
            await train(backend, pilot)
            snap = backend.state.snapshot
            assert snap.regularizer == ("L1", DEFAULT_LAM / 2)
            assert "λ·sign θ" in title_of(screen) and "exactly zero" in title_of(screen)

            await pilot.press("0")
            await train(backend, pilot)
            snap = backend.state.snapshot
            assert snap.regularizer == ("none", 0.0)
            assert all(p.penalty_grad_norm == 0 for p in weights_of(snap))

            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is main

    asyncio.run(scenario())


def test_lambda_keys_accumulate_before_the_next_step_and_do_nothing_without_a_regulariser():
    backend = backend_for("l1_vs_l2", steps=2)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_view(app, pilot)
            assert backend.state.snapshot.regularizer == ("L1", 0.05)
            await pilot.press("2")                      # the model file's λ is kept
            await pilot.press("plus")
            await pilot.press("plus")                   # both count, though no step ran in between
            await train(backend, pilot, 1)
            assert backend.state.snapshot.regularizer == ("L2", pytest.approx(0.2))
            await pilot.press("0")
            await train(backend, pilot, 1)
            await pilot.press("plus")                   # nothing to scale: says so, sends nothing
            assert "press 1 for L1 or 2 for L2" in title_of(screen)
            await train(backend, pilot, 1)
            assert backend.state.snapshot.regularizer == ("none", 0.0)
            await pilot.press("1")                      # on again from none: the default λ
            await train(backend, pilot, 1)
            assert backend.state.snapshot.regularizer == ("L1", DEFAULT_LAM)
            await pilot.press("r")                      # r again closes the view
            await pilot.pause()
            assert not isinstance(app.screen, RegularisationScreen)

    asyncio.run(scenario())


def test_the_effect_shows_while_training_l1_makes_weights_sparse():
    backend = backend_for("l1_vs_l2", steps=1)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_view(app, pilot)
            panel = screen.query_one(ParamPanel)
            assert panel.param_name == "weight"           # the bias is not penalised: no panel
            assert len(screen.query(ParamPanel)) == 1
            before = "\n".join(line.plain for line in panel.lines(96))
            assert "sparsity 0%" in before and "step 0" in before and "step 1" in before
            await train(backend, pilot, 300)
            snap = backend.state.snapshot
            w = weights_of(snap)[0]
            assert w.sparsity >= 0.5                      # 17 of 20 features are noise: L1 zeroes them
            after = "\n".join(line.plain for line in panel.lines(96))
            assert f"sparsity {w.sparsity:.0%}" in after
            assert "step 301" in after                    # the histogram now is this step's
            assert "‖θ‖" in after and "0% at step 1 →" in after
            # switch to L2: the same λ now shrinks weights without zeroing them; sparsity falls
            await pilot.press("2")
            await train(backend, pilot, 100)
            w2 = weights_of(backend.state.snapshot)[0]
            assert backend.state.snapshot.regularizer == ("L2", 0.05)
            assert w2.sparsity < w.sparsity
            assert f"sparsity {w2.sparsity:.0%}" in "\n".join(line.plain for line in panel.lines(96))

    asyncio.run(scenario())


def test_weight_params_are_the_weights_not_the_biases():
    backend = backend_for("deep_sigmoid", steps=1)
    names = [p.name for _, p in weight_params(backend.state.snapshot)]
    assert names == [f"{i}.weight" for i in range(0, 19, 2)]
    assert weight_params(None) == []


def test_panels_redraw_at_most_every_0_3_s_but_always_catch_up():
    backend = backend_for("deep_sigmoid", steps=2)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_view(app, pilot)
            now = [50.0]
            screen.clock = lambda: now[0]
            screen.panel_throttle.last = -math.inf
            draws = []
            real = screen._draw_panels
            screen._draw_panels = lambda state: (draws.append(now[0]), real(state))
            state = backend.state
            screen.on_state_changed(StateChanged(state, {"history"}))
            for t in (50.1, 50.2):
                now[0] = t
                screen.on_state_changed(StateChanged(state, {"snapshot", "history"}))
            assert draws == [50.0] and screen.panel_throttle._timer is not None
            now[0] = 50.4
            screen.panel_throttle._fired()
            assert draws == [50.0, 50.4]

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# what it looks like (pytest-textual-snapshot; --snapshot-update to accept a change)
# ---------------------------------------------------------------------------------------------

def test_snapshot_regularisation_l1(snap_compare):
    app = App(backend_for("l1_vs_l2", steps=300))   # by now L1 has zeroed most of the 17 noise weights
    assert snap_compare(app, press=["r"], terminal_size=(100, 32))


def test_snapshot_regularisation_deep_after_switching_to_l2(snap_compare):
    backend = backend_for("deep_sigmoid", steps=3)

    async def switch_and_train(pilot):
        await pilot.press("r")
        await pilot.press("2")
        await pilot.pause()
        run_steps(backend, 4)
        await pilot.pause(0.5)

    assert snap_compare(App(backend), run_before=switch_and_train, terminal_size=(100, 32))


def test_a_weights_trend_has_no_holes_and_ends_at_the_number_its_heading_shows():
    """‖θ‖ and sparsity are measured every few steps: the sparkline carries the last value over
    the steps between (no gaps, no invented jumps), and the '→' end is the measurement the
    heading shows, not the history's last point (which may be a mean over several steps)."""
    import numpy as np
    from calcml.debug.snapshot import ParamStats
    from calcml.tui.text_regularisation import param_lines
    steps = np.arange(1, 41, dtype=float)
    norms = np.full(40, np.nan)
    norms[::8] = np.linspace(1.0, 2.0, 5)
    sparsity = np.full(40, np.nan)
    sparsity[::8] = [0.0, 0.2, 0.4, 0.6, 0.79]          # the last point: a mean over a compacted stretch
    p = ParamStats("0.weight", (4, 4), 0.1, 0.01, 0.11, 2.0, 0.01, 0.005, 0.8)
    lines = [line.plain for line in param_lines("0", "weight", p, {"step": steps, "0.weight.weight_norm": norms,
                                                                     "0.weight.sparsity": sparsity}, None, None, 100)]
    assert "sparsity 80%" in lines[0]
    trend = {line.split()[0]: line for line in lines if line.strip().startswith(("‖θ‖", "sparsity"))}
    for label in ("‖θ‖", "sparsity"):
        spark = trend[label][11:].split("  ")[0]
        assert spark and " " not in spark, trend[label]
    assert trend["sparsity"].rstrip().endswith("→ 80%") and trend["‖θ‖"].split("→ ")[1].startswith("2 ")
