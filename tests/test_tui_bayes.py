"""The Bayesian view (key v): the ELBO's two terms, posterior σ per layer against its first value,
gradient noise per parameter, the Monte Carlo loss with its error bar; HMC's state and acceptance
rate; the message for a model with nothing Bayesian; [ ] change the lr (HMC's step size) from the
view; throttled plots; the layer inspector's Bayesian panel; snapshot images. The numbers on
screen are checked against the session's own BayesStats (in-process, deterministic)."""
from __future__ import annotations

import asyncio
import math

from msgspec.structs import replace
import numpy as np
import pytest

from calcml.debug import Session, load_model_file
from calcml.debug.session import SessionConfig
from calcml.tui.app import DebuggerApp
from calcml.tui.backend import LocalBackend
from calcml.tui.format import num
from calcml.tui.screens.bayes import BayesScreen
from calcml.tui.screens.inspector import InspectorScreen
from calcml.tui.messages import StateChanged
from calcml.tui.text_bayes import _n_data, change_text, layer_bayes_lines, sigma_range
from calcml.tui.widgets.acceptance_plot import AcceptancePlot
from calcml.tui.widgets.common import first_last, fit_title
from calcml.tui.widgets.elbo_plot import ElboPlot
from calcml.tui.widgets.sigma_plot import SigmaPlot
from calcml.tui.widgets.two_axis_plot import robust_range
from tui_helpers import SAMPLES, backend_with, local, plain, settle

App = DebuggerApp


def regression(steps: int = 12) -> LocalBackend:
    """bayes_regression with the gradient noise measured every 5 steps (steps 1, 6, 11 ...)."""
    return backend_with("bayes_regression.py", steps=steps, noise_every=5, curvature_every=0)


async def open_view(app, pilot) -> BayesScreen:
    await pilot.pause()
    await pilot.press("v")
    await pilot.pause()
    assert isinstance(app.screen, BayesScreen)
    return app.screen


def text_of(screen, selector: str) -> str:
    """A Static's text with its line breaks and runs of spaces as single spaces."""
    return " ".join(plain(screen.query_one(selector), width=200).split())


# ---------------------------------------------------------------------------------------------
# through the real app
# ---------------------------------------------------------------------------------------------

def test_v_opens_the_view_with_the_sessions_numbers_and_escape_or_v_close_it():
    backend = regression(steps=12)
    b = backend.session.bayes
    assert b.elbo is not None and b.noise_step == 11 and b.gradient_noise
    history = backend.state.history

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(140, 44)) as pilot:
            main = app.screen
            for key in ("escape", "v"):   # (q quits: tests/test_tui_keys.py)
                screen = await open_view(app, pilot)
                summary = text_of(screen, "#bayes-summary")
                assert "ELBO = E_q[log p(y|X,θ)] − KL(q‖prior)" in summary
                assert f"= {num(b.expected_log_likelihood)} − {num(b.kl)} = {num(b.elbo)}" in summary
                assert "loss = −ELBO/n" in summary and "n = 40" in summary
                assert f"MC loss {num(b.mc_loss)} ± {num(b.mc_loss_se)}" in summary
                assert f"{b.mc_samples} weight draws, step {b.noise_step}" in summary
                assert num(b.mc_loss_se * math.sqrt(b.mc_samples)) in summary
                sigma = text_of(screen, "#sigma-table")
                for layer, value in b.posterior_sigma.items():
                    step, first, _ = first_last(history, f"{layer}.posterior_sigma")
                    assert step == 1
                    assert f"{layer} {num(value)} {num(first)}" in sigma
                assert "at step 1" in sigma and "prior's σ" in sigma
                noise = text_of(screen, "#noise-table")
                for name, ratio in b.gradient_noise.items():
                    assert f"{name} {num(ratio)}" in noise
                assert "mostly noise" in noise and "Above 1" in noise and f"at step {b.noise_step}" in noise
                assert screen.query_one(ElboPlot).display and screen.query_one(SigmaPlot).display
                assert not screen.query_one(AcceptancePlot).display and not screen.query_one("#hmc").display
                assert "E_q[log p]" in text_of(screen, "#elbo-caption")
                await pilot.press(key)
                await pilot.pause()
                assert app.screen is main

    asyncio.run(scenario())


def test_the_view_follows_training_live():
    backend = regression(steps=3)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_view(app, pilot)
            assert "step 3" in text_of(screen, "#bayes-summary")
            backend.step(5)
            backend.pump(5)
            await pilot.pause(0.5)
            b = backend.state.snapshot.bayes
            assert b.step == 8 and b.noise_step == 6
            summary = text_of(screen, "#bayes-summary")
            assert "step 8" in summary and f"= {num(b.expected_log_likelihood)} − {num(b.kl)}" in summary
            assert f"MC loss {num(b.mc_loss)} ± {num(b.mc_loss_se)}" in summary and "step 6" in summary

    asyncio.run(scenario())


def test_hmc_panel_shows_the_samplers_state_the_acceptance_plot_and_the_chains_sigma():
    backend = local("hmc_logreg.py", steps=110)       # burn-in 100: 10 states kept
    state = backend.session.optimizer.state_info
    b = backend.session.bayes
    assert state["kept"] == 10 and set(b.posterior_sigma) == {"model"}

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_view(app, pilot)
            await pilot.pause(0.4)
            assert screen.query_one("#hmc").display
            assert "Hamiltonian Monte Carlo, step 110" in text_of(screen, "#hmc-title")
            text = text_of(screen, "#hmc-state")
            assert state["message"] in text
            assert f"acceptance rate {state['acceptance_rate']:.0%}" in text
            assert f"|ΔH| {num(state['hamiltonian_error'])}" in text
            assert f"step size ε {num(state['step_size'])} × {state['leapfrog_steps']} leapfrog steps" in text
            assert f"kept samples {state['kept']}" in text and num(state["potential"]) in text
            plot = screen.query_one(AcceptancePlot)
            assert plot.display and plot.region.height > 0
            assert not screen.query_one(ElboPlot).display
            assert not screen.query_one("#bayes-summary").display       # no ELBO for a sampler
            assert not screen.query_one("#noise-table").display
            assert "from the chain" in text_of(screen, "#sigma-title")
            assert f"model {num(b.posterior_sigma['model'])}" in text_of(screen, "#sigma-table")
            title = text_of(screen, "#bayes-title")
            assert "step size ε 0.25" in title and "halve ε" in title

    asyncio.run(scenario())


def test_hmc_before_burn_in_ends_says_when_the_chains_spread_comes():
    backend = local("hmc_logreg.py", steps=3)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_view(app, pilot)
            assert screen.query_one("#hmc").display
            text = text_of(screen, "#sigma-table")
            assert "once 2 states are kept" in text and "0 kept so far" in text

    asyncio.run(scenario())


def test_a_model_with_nothing_bayesian_gets_a_plain_message():
    backend = local("xor_mlp.py", steps=2)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_view(app, pilot)
            summary = text_of(screen, "#bayes-summary")
            assert "Nothing Bayesian in this model" in summary and "cm.nn.BayesLinear" in summary
            assert "cm.bayes.HMC" in summary and "Adam is not a sampler" in summary
            assert not screen.query_one("#bayes-cols").display and not screen.query_one("#hmc").display
            assert "keys: escape back" in text_of(screen, "#bayes-title")
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, BayesScreen)

    asyncio.run(scenario())


def test_before_the_first_step_it_says_the_numbers_come_with_it():
    backend = regression(steps=0)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_view(app, pilot)
            summary = text_of(screen, "#bayes-summary")
            assert "No Bayesian numbers yet" in summary and "press n" in summary
            assert not screen.query_one("#bayes-cols").display
            backend.step(1)
            backend.pump(1)
            await pilot.pause(0.5)
            b = backend.state.snapshot.bayes
            summary = text_of(screen, "#bayes-summary")
            assert f"= {num(b.expected_log_likelihood)} − {num(b.kl)} = {num(b.elbo)}" in summary
            assert screen.query_one("#bayes-cols").display

    asyncio.run(scenario())


def test_lr_keys_in_the_view_halve_and_double_the_lr():
    backend = regression(steps=2)
    lr = backend.session.lr

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_view(app, pilot)
            await pilot.press("left_square_bracket")
            title = text_of(screen, "#bayes-title")
            assert "→ lr ÷2" in title and f"= {num(lr / 2)}" in title and "press n" in title
            backend.step(1)
            backend.pump(1)
            await pilot.pause(0.2)
            assert backend.session.lr == pytest.approx(lr / 2)
            title = text_of(screen, "#bayes-title")
            assert "from the next step" not in title and f"lr {num(lr / 2)}" in title
            await pilot.press("right_square_bracket")
            await pilot.press("right_square_bracket")
            assert "×4" in text_of(screen, "#bayes-title")
            backend.step(1)
            backend.pump(1)
            await pilot.pause(0.2)
            assert backend.session.lr == pytest.approx(2 * lr)

    asyncio.run(scenario())


def test_for_hmc_the_lr_keys_change_the_step_size():
    backend = local("hmc_logreg.py", steps=2)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_view(app, pilot)
            await pilot.press("right_square_bracket")
            assert "→ ε ×2 = 0.5" in text_of(screen, "#bayes-title")
            backend.step(1)
            backend.pump(1)
            await pilot.pause(0.3)
            assert backend.session.optimizer.state_info["step_size"] == pytest.approx(0.5)
            assert "step size ε 0.5 ×" in text_of(screen, "#hmc-state")

    asyncio.run(scenario())


def test_the_lr_keys_are_disabled_once_training_has_ended():
    spec = load_model_file(str(SAMPLES / "bayes_linear_exact.py"), steps=3)
    backend = LocalBackend(Session(spec, SessionConfig(noise_every=0, curvature_every=0)))
    backend.step(3)
    backend.pump(3)
    assert backend.state.state == "finished"

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_view(app, pilot)
            assert screen.check_action("scale_lr", (0.5,)) is None
            await pilot.press("left_square_bracket")
            assert screen.lr_request is None
            assert "noise_every = 0" in text_of(screen, "#bayes-summary")

    asyncio.run(scenario())


def test_a_loss_that_is_not_an_elbo_says_how_to_get_the_terms():
    backend = regression(steps=2)
    snap = backend.state.snapshot
    fake = replace(snap, bayes=replace(snap.bayes, elbo=None, expected_log_likelihood=None, kl=None))

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_view(app, pilot)
            with backend.state.lock:
                backend.state.snapshot = fake
                backend.state._bump("snapshot")
            # (the view takes a new snapshot on its own timer: waited for, not slept on)
            await settle(pilot, lambda: "The loss is not an ELBO" in text_of(screen, "#bayes-summary"),
                         what="the summary to take the snapshot without ELBO terms")
            summary = text_of(screen, "#bayes-summary")
            assert "cm.bayes.elbo_from_outputs" in summary
            assert "E_q[log p(y|X,θ)]" not in summary
            assert screen.query_one("#sigma-table").display

    asyncio.run(scenario())


def test_layout_stacks_at_80x24_and_puts_plots_beside_the_tables_when_wide():
    backend = regression(steps=20)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_view(app, pilot)
            await pilot.pause(0.3)
            assert screen.has_class("-stacked")
            plots, tables = screen.query_one("#bayes-plots"), screen.query_one("#bayes-tables")
            assert tables.region.y > plots.region.y and tables.region.x == plots.region.x
            assert screen.query_one(ElboPlot).region.height == 11
            assert screen.query_one(ElboPlot).region.y < 24                 # the first plot is in view
            await pilot.resize_terminal(160, 48)
            await pilot.pause(0.3)
            assert not screen.has_class("-stacked")
            assert tables.region.x > plots.region.x and tables.region.y == plots.region.y
            for plot in (screen.query_one(ElboPlot), screen.query_one(SigmaPlot)):
                assert 12 <= plot.region.height <= 30

    asyncio.run(scenario())


def test_plots_redraw_only_when_history_changes_and_at_most_every_0_3_s():
    backend = regression(steps=3)

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


def test_the_inspector_shows_a_bayes_layers_posterior_sigma_and_gradient_noise():
    backend = regression(steps=12)
    b = backend.session.bayes
    module = dict(backend.session.layers)["2"]
    sigma = module.weight_sigma

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            for _ in range(2):                       # layers 0, 1, 2: the middle BayesLinear
                await pilot.press("down")
            await pilot.press("enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, InspectorScreen) and screen.layer_name == "2"
            assert screen.query_one("#bayes").display
            text = text_of(screen, "#bayes")
            assert f"posterior σ {num(b.posterior_sigma['2'])} mean over its weights (step 12)" in text
            assert f"min–max {num(sigma.min())} – {num(sigma.max())} (step 12)" in text
            for short in ("weight_mu", "weight_rho", "bias_mu", "bias_rho"):
                assert f"{short} {num(b.gradient_noise['2.' + short])}" in text
            assert f"{b.mc_samples} weight draws at step {b.noise_step}" in text
            await pilot.press("escape")
            await pilot.press("down")                # layer 3, a LeakyReLU: no Bayesian panel
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen.layer_name == "3" and not app.screen.query_one("#bayes").display

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# what reaches the app
# ---------------------------------------------------------------------------------------------

def test_the_bayesian_series_and_settings_reach_the_app():
    backend = regression(steps=6)
    history, model = backend.state.history, backend.state.model
    for name in ("elbo", "expected_log_likelihood", "kl", "mc_loss", "mc_loss_se", "0.posterior_sigma",
                 "2.posterior_sigma", "4.posterior_sigma", "0.weight_mu.gradient_noise", "4.bias_rho.gradient_noise"):
        assert name in history, name
    assert model["bayes_layers"] == ["0", "2", "4"] and model["sampler"] is False
    assert model["noise_every"] == 5 and model["noise_samples"] == 8 and model["bayes_note"] is None
    steps = history["step"]
    assert steps[np.isfinite(history["mc_loss"])].tolist() == [1, 6]
    hmc = local("hmc_logreg.py", steps=2)
    for name in ("hmc.acceptance_rate", "hmc.potential", "hmc.hamiltonian_error"):
        assert name in hmc.state.history, name
    assert hmc.state.model["sampler"] is True and hmc.state.model["bayes_layers"] == []
    plain_model = local("xor_mlp.py").state.model
    assert plain_model["bayes_layers"] == [] and plain_model["sampler"] is False


def test_a_model_that_is_one_bayes_layer_is_named_model_as_in_the_layer_table():
    backend = backend_with("bayes_linear_exact.py", steps=2, noise_every=1)
    b = backend.state.snapshot.bayes
    assert set(b.posterior_sigma) == {"model"} == {layer.name for layer in backend.state.snapshot.layers}
    assert "model.posterior_sigma" in backend.state.history and ".posterior_sigma" not in backend.state.history
    assert backend.state.model["bayes_layers"] == ["model"]


# ---------------------------------------------------------------------------------------------
# the pieces
# ---------------------------------------------------------------------------------------------

def test_robust_range_lets_a_few_far_off_first_points_run_off_the_plot():
    values = np.concatenate([[-3000.0], np.linspace(-100, 0, 99)])
    assert robust_range(values) == (-100.0, 0.0, True)
    assert robust_range(np.linspace(-100, 0, 50)) == (-100.0, 0.0, False)
    assert robust_range(np.array([1.0, 5.0])) == (1.0, 5.0, False)
    assert robust_range(np.array([np.nan])) is None


def test_fit_title_takes_the_longest_that_fits():
    titles = ("a long title here", "short")
    assert fit_title(titles, 30) == "a long title here"
    assert fit_title(titles, 10) == "short"
    assert fit_title(titles, 5) == "sh…"


def test_n_data_only_when_the_loss_is_minus_elbo_over_a_whole_number():
    assert _n_data(-120.0, 3.0) == 40
    assert _n_data(-120.0, 3.1) is None
    assert _n_data(None, 3.0) is None and _n_data(-1.0, 0.0) is None


def test_change_text_says_which_way_sigma_moved():
    assert change_text(1.5).plain == "×1.5 ↑" and change_text(0.5).plain == "×0.5 ↓"
    assert change_text(1.01).plain == "steady" and change_text(None).plain == "-"


def test_sigma_range_reads_the_rho_histogram_and_skips_a_constant_rho():
    backend = regression(steps=3)
    snap = backend.state.snapshot
    layer = next(layer for layer in snap.layers if layer.name == "0")
    sigma = dict(backend.session.layers)["0"].weight_sigma
    lo, hi = sigma_range(layer, snap.histograms)
    assert lo == pytest.approx(sigma.min()) and hi == pytest.approx(sigma.max())
    first = local("bayes_regression.py").state.first_histograms      # step 0: every ρ the same
    assert sigma_range(layer, first) is None
    assert sigma_range(layer, None) is None
    assert layer_bayes_lines(next(l for l in snap.layers if l.name == "1"), snap) is None


# ---------------------------------------------------------------------------------------------
# what it looks like (pytest-textual-snapshot; --snapshot-update to accept a change)
# ---------------------------------------------------------------------------------------------

def test_snapshot_bayes_regression_after_40_steps(snap_compare):
    app = App(backend_with("bayes_regression.py", steps=40, noise_every=10, curvature_every=0))

    async def open_and_wait(pilot):
        await pilot.press("v")
        await pilot.pause(0.5)

    assert snap_compare(app, run_before=open_and_wait, terminal_size=(140, 44))


def test_snapshot_bayes_regression_80x24(snap_compare):
    app = App(backend_with("bayes_regression.py", steps=40, noise_every=10, curvature_every=0))
    assert snap_compare(app, press=["v"], terminal_size=(80, 24))
