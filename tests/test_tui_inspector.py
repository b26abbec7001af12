"""The layer inspector (enter on a layer): the chain-rule factors from the loss down to the layer,
checked against products computed here from the snapshot's per-layer gradient norms; its
histograms, live updates, throttled plots, layout at 80x24 and 160x48; and a snapshot image."""
from __future__ import annotations

import asyncio
import io
import math
import os

import numpy as np
import pytest
from rich.console import Console

from calcml.debug import Session
from calcml.debug.loader import load_model_file
from calcml.debug.snapshot import LayerStats, ParamStats
from calcml.tui.app import DebuggerApp
from calcml.tui.backend import LocalBackend
from calcml.tui.format import num
from calcml.tui.messages import StateChanged
from calcml.tui.screens.inspector import InspectorScreen
from calcml.tui.text_histogram import axis_line, bar_rows, histogram_lines, rebin
from calcml.tui.text_inspector import chain_links, chain_summary, factor_style
from calcml.tui.widgets.common import HistogramKeeper, sparkline
from calcml.tui.widgets.layer_history_plot import LayerHistoryPlot
from tui_helpers import local, run, screen_text, settle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


App = DebuggerApp


def backend_for(name: str, steps: int = 5) -> LocalBackend:
    spec = load_model_file(os.path.join(ROOT, "sample_models", f"{name}.py"), seed=0)
    backend = LocalBackend(Session(spec))
    if steps:
        backend.step(steps)
        backend.pump(steps)
    return backend


def plain(renderable, width: int = 200) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def expected_chain(layers, name: str) -> list:
    """The running products, computed here: ‖∂L/∂y‖, then × ‖∂L/∂in‖/‖∂L/∂out‖ of each layer
    from the last down to the one after `name` (and at a fork, × its whole ‖∂L/∂in‖ over its
    own share), then ‖∂L/∂W‖ (or the layer's own factor)."""
    names = [layer.name for layer in layers]
    k = names.index(name)
    product = layers[-1].grad_out_norm
    out = [product]
    for layer in reversed(layers[k + 1:]):
        product *= layer.grad_in_norm / layer.grad_out_norm
        out.append(product)
        if layer.grad_in_total_norm is not None:
            product *= layer.grad_in_total_norm / layer.grad_in_norm
            out.append(product)
    chosen = layers[k]
    if "weight" in chosen.params:
        out.append(chosen.params["weight"].grad_norm)
    else:
        out.append(product * chosen.grad_in_norm / chosen.grad_out_norm)
    return out


async def open_inspector(app, pilot, row: int) -> InspectorScreen:
    await pilot.pause()
    for _ in range(row):
        await pilot.press("down")
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, InspectorScreen)
    return app.screen


async def open_inspector_on(app, pilot, name: str) -> InspectorScreen:
    """The inspector opened on the layer named `name` (its row in the latest snapshot)."""
    names = [layer.name for layer in app.backend.state.snapshot.layers]
    screen = await open_inspector(app, pilot, row=names.index(name))
    assert screen.layer_name == name
    return screen


# ---------------------------------------------------------------------------------------------
# through the real app
# ---------------------------------------------------------------------------------------------

def test_enter_opens_the_inspector_with_the_chain_rule_products_and_escape_returns():
    backend = backend_for("deep_sigmoid", steps=5)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            main = app.screen
            screen = await open_inspector(app, pilot, row=4)
            assert screen.layer_name == "4"
            snap = backend.state.snapshot
            expected = expected_chain(snap.layers, "4")
            got = [link.product for link in screen.links]
            assert len(got) == len(expected) == 1 + (len(snap.layers) - 5) + 1
            for g, e in zip(got, expected):
                assert math.isclose(g, e, rel_tol=1e-12)
            # each factor is the layer's ratio, and the product telescopes to the measured ‖∂L/∂a_4‖
            for link, layer in zip(screen.links[1:-1], reversed(snap.layers[5:])):
                assert link.layer == layer.name
                assert math.isclose(link.factor, layer.grad_in_norm / layer.grad_out_norm, rel_tol=1e-12)
            assert math.isclose(screen.links[-2].product, snap.layers[4].grad_out_norm, rel_tol=1e-9)
            assert screen.links[-1].type == "weight"
            assert math.isclose(screen.links[-1].product, snap.layers[4].params["weight"].grad_norm)
            # the numbers on screen are those numbers
            table = plain(screen.query_one("#chain").content)
            for link in screen.links:
                assert num(link.product) in table
            assert "σ'(z) ≤ 1/4" in table and "Wᵀ" in table
            assert "∂L/∂w_k = (∂L/∂y)·(∂y/∂a_L)···(∂a_{k+1}/∂a_k)·(∂a_k/∂w_k)" in str(
                screen.query_one("#chain-formula").content)
            summary = plain(screen.query_one("#chain-summary").content)
            assert "shrink" in summary   # ten sigmoids: factors below 0.5
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is main

    asyncio.run(scenario())


def test_a_residual_blocks_first_layer_shows_its_own_factor_and_the_shortcut_joining_its_input():
    backend = backend_for("residual_mlp", steps=3)
    fork = 1 + 6 * 3      # blocks.6.fc1: inp, then fc1, act, fc2 per block

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_inspector(app, pilot, row=fork)
            assert screen.layer_name == "blocks.6.fc1"
            layers = {layer.name: layer for layer in backend.state.snapshot.layers}
            assert [link.type for link in screen.links] == ["loss", "Linear", "Linear", "ReLU", "Linear", "join",
                                                           "Linear", "ReLU", "weight"]
            join = screen.links[5]
            above = layers["blocks.7.fc1"]
            assert join.layer == "blocks.7.fc1" and math.isclose(join.product, above.grad_in_total_norm)
            assert math.isclose(screen.links[4].product * join.factor, join.product, rel_tol=1e-12)
            assert math.isclose(screen.links[-2].product, layers["blocks.6.fc1"].grad_out_norm, rel_tol=1e-10)
            table = plain(screen.query_one("#chain").content)
            assert "+ other paths" in table and "into its input" in table
            assert f"×{num(join.factor)}" in table and num(join.product) in table
            summary = " ".join(plain(screen.query_one("#chain-summary").content).split())
            assert "6 factors and 1 join took the gradient" in summary and "not a single chain" not in summary
            assert f"the other paths into its input bring that to {num(layers['blocks.6.fc1'].grad_in_total_norm)}" \
                in summary

    asyncio.run(scenario())


def test_inspector_of_an_activation_layer_ends_with_its_own_factor_and_shows_its_derivative():
    backend = backend_for("deep_sigmoid", steps=3)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_inspector(app, pilot, row=17)
            assert screen.layer_name == "17"
            layers = backend.state.snapshot.layers
            last = screen.links[-1]
            assert last.layer == "17" and last.type == "Sigmoid"
            assert math.isclose(last.product, layers[17].grad_in_norm, rel_tol=1e-9)
            assert [link.product for link in screen.links] == pytest.approx(expected_chain(layers, "17"),
                                                                            rel=1e-12)
            deriv = screen.query_one("#hist-deriv")
            assert deriv.display and not screen.query_one("#hist-weight").display
            text = "\n".join(line.plain for line in deriv.lines(80))
            assert "σ'(z)" in text and "step 3" in text
            assert "no parameters" in plain(screen.query_one("#grads").content)

    asyncio.run(scenario())


def test_inspector_follows_training_live_and_keeps_the_last_histograms():
    backend = backend_for("deep_sigmoid", steps=5)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_inspector(app, pilot, row=0)
            assert screen.histograms.step == 5
            before = screen.links[-1].product
            backend.step(4)
            backend.pump(4)
            await pilot.pause(0.4)
            snap = backend.state.snapshot
            assert snap.step == 9
            assert [link.product for link in screen.links] == pytest.approx(expected_chain(snap.layers, "0"),
                                                                            rel=1e-12)
            assert screen.links[-1].product != before
            assert "step 9" in str(screen.query_one("#insp-title").content)
            # while running, histograms come only every histogram_every steps: the last ones stay
            backend.run()
            backend.pump(3)
            await pilot.pause(0.4)
            assert backend.state.snapshot.step == 12 and backend.state.snapshot.histograms is None
            assert screen.histograms.step == 9
            title = screen.query_one("#hist-weight")._title.plain
            assert "step 9" in title and "latest taken" in title
            assert [link.product for link in screen.links] == pytest.approx(
                expected_chain(backend.state.snapshot.layers, "0"), rel=1e-12)
            backend.pause()
            backend.pump(1)
            # data and penalty gradient per parameter, and their sum
            grads = plain(screen.query_one("#grads").content)
            w = backend.state.snapshot.layers[0].params["weight"]
            assert num(w.grad_norm) in grads and num(w.total_grad_norm) in grads
            assert "‖∇penalty‖" in grads

    asyncio.run(scenario())


def test_plots_redraw_only_when_history_changes_and_at_most_every_0_3_s():
    backend = backend_for("deep_sigmoid", steps=2)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_inspector(app, pilot, row=0)
            now = [100.0]
            screen.clock = lambda: now[0]
            screen.plot_throttle.last = -math.inf
            draws = []
            real = screen._draw_plot
            screen._draw_plot = lambda state: (draws.append(now[0]), real(state))
            state = backend.state
            screen.on_state_changed(StateChanged(state, {"snapshot"}))   # no history change: no plot
            assert draws == []
            screen.on_state_changed(StateChanged(state, {"history"}))
            assert draws == [100.0]
            for t in (100.05, 100.1, 100.2):                       # 10 Hz: throttled
                now[0] = t
                screen.on_state_changed(StateChanged(state, {"history", "snapshot"}))
            assert draws == [100.0]
            assert screen.plot_throttle._timer is not None                  # ... but the last change is drawn later
            now[0] = 100.31
            screen.plot_throttle._fired()
            assert draws == [100.0, 100.31]
            screen.plot_throttle._fired()                             # nothing new: nothing drawn
            assert draws == [100.0, 100.31]

    asyncio.run(scenario())


def test_layout_is_stacked_and_scrollable_at_80x24_and_side_by_side_at_160x48():
    for size, stacked in (((80, 24), True), ((160, 48), False)):
        backend = backend_for("deep_sigmoid", steps=3)

        async def scenario():
            app = App(backend)
            async with app.run_test(size=size) as pilot:
                screen = await open_inspector(app, pilot, row=2)
                await pilot.pause(0.1)
                left, right = screen.query_one("#insp-left"), screen.query_one("#insp-right")
                assert screen.has_class("-stacked") is stacked
                if stacked:
                    assert right.region.y >= left.region.y + left.region.height or right.region.y < 0 or \
                        right.region.height == 0
                    body = screen.query_one("#insp-body")
                    assert body.max_scroll_y > 0                    # everything is reachable by scrolling
                else:
                    assert right.region.x > left.region.x and right.region.y == left.region.y
                    assert screen.query_one(LayerHistoryPlot).region.height > 0
                # the title and the formula fit the width
                assert screen.query_one("#insp-title").region.width <= size[0]

        asyncio.run(scenario())


def test_inspector_before_the_first_step_says_there_are_no_gradients_yet():
    backend = backend_for("deep_sigmoid", steps=0)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_inspector(app, pilot, row=0)
            assert all(link.product is None for link in screen.links)
            assert "No gradients yet" in plain(screen.query_one("#chain-summary").content)
            assert screen.histograms.step == 0     # the initial weights' histograms

    asyncio.run(scenario())


def test_inspector_shows_the_hessian_diagonal_beside_the_optimisers_step_and_the_lr_edge():
    cases = (("lr_edge", 3, 0, "η"), ("adam_vs_sgd", 20, 0, "η/(√v̂+ε)"), ("deep_sigmoid", 2, 1, None))
    for name, steps, row, step_header in cases:
        backend = backend_for(name, steps=steps)

        async def scenario():
            app = App(backend)
            async with app.run_test(size=(120, 40)) as pilot:
                screen = await open_inspector(app, pilot, row=row)
                text = plain(screen.query_one("#curvature").content)
                c, lr = backend.session.curvature, backend.session.lr
                assert f"λ_max {num(c.lambda_max)} (step {c.step})" in text
                if c.lr_edge is not None:
                    assert f"lr edge {c.edge_formula} = {num(c.lr_edge)}" in text and "× the edge" in text
                layer = backend.state.snapshot.layers[row]
                if step_header is None:                      # no parameters: the context line only
                    assert not layer.params and "Hᵢᵢ" not in text
                    return
                assert step_header in text and "1/Hᵢᵢ" in text
                for p in layer.params.values():
                    step = p.effective_lr if p.effective_lr is not None else lr
                    for value in (p.hessian_diag, 1 / p.hessian_diag, step, step * p.hessian_diag):
                        assert num(value) in text

        asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# the pieces
# ---------------------------------------------------------------------------------------------

def _param(name, grad=0.1):
    return ParamStats(name, (2, 2), grad, 0.0, grad, 1.0, 1e-3, 1e-3, 0.0)


def test_chain_links_multiply_the_ratios_and_flag_small_and_large_factors():
    layers = (
        LayerStats("fc1", "Linear", {"weight": _param("fc1.weight", 0.3)}, grad_in_norm=None, grad_out_norm=0.4),
        LayerStats("act", "ReLU", {}, grad_in_norm=0.4, grad_out_norm=1.0, activation="relu",
                   mean_local_derivative=0.5),
        LayerStats("fc2", "Linear", {"weight": _param("fc2.weight")}, grad_in_norm=1.0, grad_out_norm=0.25),
    )
    links = chain_links(layers, "fc1")
    assert [link.type for link in links] == ["loss", "Linear", "ReLU", "weight"]
    assert [link.product for link in links] == pytest.approx([0.25, 1.0, 0.4, 0.3])
    assert [link.factor for link in links[1:3]] == pytest.approx([4.0, 0.4])
    assert links[1].note == "Wᵀ" and links[2].note.startswith("0 or 1")
    assert factor_style(4.0) == "bold red" and factor_style(0.4) == "bold yellow" and factor_style(1.0) == "green"
    summary = chain_summary(links, layers[0]).plain
    assert "1 shrink" in summary and "1 grow" in summary
    # the last layer: only the loss's gradient and the weight gradient
    assert [link.type for link in chain_links(layers, "fc2")] == ["loss", "weight"]
    assert chain_links(layers, "nope") == []


def test_chain_summary_says_when_the_model_is_not_a_single_chain():
    layers = (
        LayerStats("a", "Linear", {"weight": _param("a.weight")}, grad_in_norm=None, grad_out_norm=0.9),
        LayerStats("b", "Linear", {"weight": _param("b.weight")}, grad_in_norm=0.5, grad_out_norm=1.0),
    )
    links = chain_links(layers, "a")
    assert links[-2].product == pytest.approx(0.5)
    assert "not a single chain" in chain_summary(links, layers[0]).plain


def test_histogram_rebin_keeps_every_count_and_never_hides_a_nonzero_bin():
    rng = np.random.default_rng(0)
    counts, edges = np.histogram(rng.normal(size=1000), bins=30)
    assert np.array_equal(rebin(counts, edges, edges[0], edges[-1], 30), counts)   # the same bins
    for columns in (7, 15):                                   # fewer columns: bins are added up
        assert rebin(counts, edges, edges[0] - 1, edges[-1] + 2, columns).sum() == pytest.approx(1000)
    wide = rebin(counts, edges, edges[0], edges[-1], 97)      # more columns: each shows a bin's count
    assert wide.max() == counts.max() and set(wide) <= set(counts)
    rows = bar_rows(np.array([0.0, 1.0, 1000.0]), 1000.0, 2)
    assert rows[-1][0] == " " and rows[-1][1] != " " and rows[0][2] == "█"
    axis = axis_line(-1.5, 2.5, 40)
    assert axis.startswith("-1.5") and axis.endswith("2.5") and "0" in axis[5:-4]
    lines = histogram_lines([("a", counts, edges, "blue"), ("b", counts, edges * 0.5, "green")], 60, rows=2)
    assert len(lines) == 2 * 2 + 1 and all(len(line.plain) <= 60 for line in lines)
    assert histogram_lines([], 40)[0].plain == "(no histogram yet)"
    spike = histogram_lines([("", np.array([1, 0, 12345]), np.array([0.0, 1.0, 2.0, 3.0]), "red")], 40)
    assert spike[0].plain.endswith(" max 12345") and len(spike[0].plain) <= 40
    assert len(sparkline(np.arange(100.0), 20)) == 20 and sparkline([], 5) == ""


def test_a_series_that_hardly_moves_draws_flat_and_one_that_moves_spans_the_height():
    noise = 3.65 + 1e-4 * np.random.default_rng(0).standard_normal(40)      # ±0.003%: noise
    assert set(sparkline(noise, 20)) == {"▄"}
    assert sparkline(np.linspace(3.0, 4.0, 20), 20)[0] == "▁" and sparkline(np.linspace(3.0, 4.0, 20), 20)[-1] == "█"
    moved = sparkline(np.r_[np.full(10, 3.65), np.full(10, 3.668)], 20)    # +0.5%: shows, about the middle
    assert "▁" < moved[0] < "▄" < moved[-1] < "█"
    grads = 1e-3 * (1 + 0.02 * np.random.default_rng(1).standard_normal(80))   # log scale: ±2%
    assert set(sparkline(grads, 20, log=True)) <= {"▁", "▂"}
    assert sparkline(np.geomspace(1e-6, 1e-2, 80), 20, log=True)[-1] == "█"


def test_histogram_keeper_keeps_the_last_snapshot_with_histograms():
    class Snap:
        def __init__(self, step, histograms):
            self.step, self.histograms = step, histograms

    keeper = HistogramKeeper()
    assert not keeper.update(None) and keeper.step is None
    h = {"w.weight_hist": (np.array([1]), np.array([0.0, 1.0]))}
    assert keeper.update(Snap(4, h)) and keeper.step == 4
    assert not keeper.update(Snap(5, None)) and keeper.step == 4
    assert keeper.get("w.weight_hist") is h["w.weight_hist"] and keeper.get("nope") is None
    keeper.seed({"w.weight_hist": (np.array([2]), np.array([0.0, 1.0]))}, 0)   # only when empty
    assert keeper.step == 4
    fresh = HistogramKeeper()
    fresh.seed(h, 0)
    assert fresh.step == 0 and fresh.update(Snap(7, {"x": 1})) and fresh.step == 7


# ---------------------------------------------------------------------------------------------
# what it looks like (pytest-textual-snapshot; --snapshot-update to accept a change)
# ---------------------------------------------------------------------------------------------

def test_snapshot_inspector_sigmoid_layer(snap_compare):
    app = App(backend_for("deep_sigmoid", steps=5))
    assert snap_compare(app, press=["down", "enter"], terminal_size=(100, 32))


def test_snapshot_inspector_linear_layer_wide(snap_compare):
    app = App(backend_for("deep_sigmoid", steps=5))
    assert snap_compare(app, press=["down", "down", "enter"], terminal_size=(160, 48))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot_inspector_residual_fork(snap_compare, size):
    app = App(backend_for("residual_mlp", steps=5))
    assert snap_compare(app, press=["down"] * 19 + ["enter"], terminal_size=size)


def test_inspector_opened_while_running_shows_step_0_histograms_until_new_ones_come():
    backend = backend_for("deep_sigmoid", steps=2)
    backend.run()
    backend.pump(3)                                   # running: no histograms on steps 3..5
    assert backend.state.snapshot.histograms is None

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_inspector(app, pilot, row=0)
            assert screen.histograms.step == 0
            title = screen.query_one("#hist-weight")._title.plain
            assert "step 0" in title and "latest taken" in title
            backend.pause()
            backend.pump(1)                           # paused: the next step brings histograms
            backend.step(1)
            backend.pump(1)
            await pilot.pause(0.4)
            assert screen.histograms.step == backend.state.snapshot.step == 6
            assert "latest taken" not in screen.query_one("#hist-weight")._title.plain

    asyncio.run(scenario())


def test_a_covered_inspector_is_told_what_it_missed_when_the_view_above_it_closes():
    """The app tells the screen on top what changed (a StateChanged message); the inspector,
    under the curvature view while training steps, is told all it missed once it is on top again."""
    from calcml.tui.screens.curvature import CurvatureScreen
    backend = backend_for("deep_sigmoid", steps=5)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            inspector = await open_inspector(app, pilot, row=0)
            await pilot.press("h")
            await pilot.pause()
            assert isinstance(app.screen, CurvatureScreen)
            told = []
            follow = inspector._follow
            inspector._follow = lambda state, changed: (told.append(changed), follow(state, changed))
            backend.step(3)
            backend.pump(3)
            app.poll()
            await pilot.pause()
            assert "step 8" in str(app.screen.query_one("#curv-title").content)
            assert told == [] and "step 5" in str(inspector.query_one("#insp-title").content)   # covered
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is inspector
            assert told and {"snapshot", "history"} <= told[0]
            assert "step 8" in str(inspector.query_one("#insp-title").content)

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# an activation's mean f' against its size, and the mini-batch noise panel
# ---------------------------------------------------------------------------------------------

def _relu_net_session(config=None):
    import calcml as cm
    import calcml.nn.functional as F
    from calcml.debug import SessionConfig
    from helpers import make_spec
    cm.manual_seed(1)
    model = cm.nn.Sequential(cm.nn.Linear(3, 8), cm.nn.ReLU(), cm.nn.Linear(8, 1))
    rng = np.random.default_rng(4)
    X = rng.normal(size=(64, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 2.0 * rng.normal(size=(64, 1))
    spec = make_spec(model, F.mse_loss, (X, y), batch_size=16, steps=20)
    return Session(spec, config or SessionConfig(curvature_every=0)), model, X, y


def test_an_activations_size_is_the_gradient_weighted_rms_of_its_derivative_not_its_mean():
    """What the chain summary says of a ReLU row, checked against numpy: the mean is the fraction
    of entries on; the size ‖∂L/∂in‖/‖∂L/∂out‖ is √(Σ f'²g²/Σ g²), g = ∂L/∂out in closed form."""
    from calcml.tui.text_inspector import mean_and_size
    s, model, X, y = _relu_net_session()
    from calcml.data import DataLoader
    W1, b1, W2, b2 = (p.data.copy() for p in model.parameters())
    s.step(1)
    snap = s.tick()
    # the step's batch: the first of the same seeded DataLoader the session shuffles with
    Xb, yb = next(iter(DataLoader((X, y), batch_size=16, shuffle=True, seed=0)))
    z = Xb @ W1.T + b1
    on = (z > 0).astype(float)                       # ReLU's f': 0 or 1
    pred = np.maximum(z, 0) @ W2.T + b2
    g = (2 / len(Xb)) * (pred - yb) @ W2             # ∂L/∂(ReLU's output), mean squared error
    relu = snap.layers[1]
    assert relu.mean_local_derivative == pytest.approx(on.mean(), rel=1e-12)
    assert relu.grad_ratio == pytest.approx(np.sqrt(np.sum(on * g * g) / np.sum(g * g)), rel=1e-9)
    assert abs(relu.grad_ratio - relu.mean_local_derivative) > 1e-3   # they do differ here
    summary = " ".join(plain(chain_summary(chain_links(snap.layers, "0"), snap.layers[0]), width=400).split())
    assert mean_and_size({"relu"}) in summary and "√(Σ f′²·g² / Σ g²)" in summary


def test_the_inspector_shows_the_mini_batch_noise_of_the_layers_parameters():
    from calcml.debug import SessionConfig
    session, _, _, _ = _relu_net_session(SessionConfig(curvature_every=0, batch_noise_every=2,
                                                                    batch_noise_groups=4))
    backend = LocalBackend(session)
    backend.step(4)
    backend.pump(4)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(160, 60)) as pilot:
            screen = await open_inspector(app, pilot, row=0)
            b = backend.state.snapshot.batch_noise
            assert b is not None and b.step == 4
            text = " ".join(plain(screen.query_one("#batch-noise").content, width=300).split())
            assert f"step 4, from {b.groups} micro-batches of {b.group_size} of the batch's 16 examples" in text
            assert f"weight {num(b.by_param['0.weight'])}" in text and f"bias {num(b.by_param['0.bias'])}" in text
            assert f"whole model: noise/signal {num(b.noise_signal)}" in text
            assert "‖standard error of the batch's mean gradient‖ / ‖that gradient‖" in text

    asyncio.run(scenario())


def test_the_noise_panel_says_when_it_is_not_measured_yet_or_off():
    from calcml.debug.snapshot import BatchNoiseStats
    from calcml.tui.text_batch_noise import batch_noise_panel

    class Snap:
        lr = 0.1
        batch_noise = None
    layer = LayerStats("0", "Linear")
    assert "Not measured yet" in plain(batch_noise_panel(layer, Snap()))
    Snap.batch_noise = BatchNoiseStats(step=3, noise_signal=None, batch_size=0, groups=0,
                                       note="mini-batch noise is off: measuring it failed: ValueError: no")
    assert "Mini-batch noise is off: measuring it failed: ValueError: no." in plain(batch_noise_panel(layer, Snap()))
    Snap.batch_noise = BatchNoiseStats(step=3, noise_signal=2.5, batch_size=16, groups=16, group_size=1)
    text = " ".join(plain(batch_noise_panel(layer, Snap()), width=300).split())
    assert "per-example gradients" in text and "mostly noise" in text and "about 100 examples" in text


def test_at_80x24_a_long_chain_is_scrolled_to_the_inspected_layers_own_row():
    """The deepest layer's chain is taller than 24 rows: its own row and the summary are in
    sight on opening, the formula above them a scroll up."""
    async def body():
        app = DebuggerApp(local("deep_sigmoid.py", steps=3))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("enter")                       # layer 0: all 18 factors above it
            await settle(pilot, lambda: type(app.screen).__name__ == "InspectorScreen")
            await settle(pilot, lambda: "0 → W" in screen_text(app), what="layer 0's own row in sight")
            assert "factors took the gradient from" in screen_text(app)
            scroll = app.screen.query_one("#insp-body")
            assert scroll.scroll_y > 0
            scroll.scroll_home(animate=False)
            await settle(pilot, lambda: "∂L/∂w_k" in screen_text(app), what="the formula, scrolled up to")
    run(body())
