"""Each sample's docstring, followed as written: the keys it names are pressed in the interface
and the effect it promises is checked (the headless behaviour is in test_samples.py)."""
from __future__ import annotations

import numpy as np

from calcml.tui.app import DebuggerApp
from tui_helpers import backend_with, local, run, screen_text, settle


def started(backend, kind) -> list:
    return [w for w in backend.state.warnings if w.kind == kind and w.event == "start"]


def test_lr_edge_restarted_with_the_lr_halved_learns_without_the_warning():
    """"warns lr_too_large at step 1 ... press ctrl+r ... [ to halve the learning rate and space:
    no warning this time, and the loss falls. The curvature view (key h) plots lr against the edge.\""""
    backend = local("lr_edge.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("space")
            backend.pump(200)
            assert backend.session.done and [w.step for w in started(backend, "lr_too_large")] == [1]
            await pilot.press("ctrl+r")
            backend.pump(1)
            await settle(pilot, lambda: backend.state.snapshot.step == 0 and backend.state.state == "paused")
            await pilot.press("left_square_bracket", "space")
            backend.pump(200)
            assert backend.session.state == "finished" and not started(backend, "lr_too_large")
            loss = backend.session.history.series("loss")
            assert loss[-1] < loss[0] / 10
            await pilot.press("h")
            await settle(pilot, lambda: "lr edge" in screen_text(app), what="the curvature view")
            curvature = backend.state.snapshot.curvature
            # the file sets η = 1.1 × 2/λ_max: halved, it is 0.55 of the edge
            assert np.isclose(backend.session.lr / curvature.lr_edge, 0.55, rtol=0.02)
            assert "inside the edge" in screen_text(app)
    run(body())


def test_l1_vs_l2_sparsity_climbs_in_the_regularisation_view_then_l2_keeps_weights_small_not_zero():
    backend = local("l1_vs_l2.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("r")
            await settle(pilot, lambda: type(app.screen).__name__ == "RegularisationScreen")
            await pilot.press("space")
            backend.pump(300)
            history = backend.session.history
            sparsity = history.series("weight.sparsity")[np.isfinite(history.series("weight.sparsity"))]
            assert sparsity[0] == 0 and sparsity[-1] >= 0.8 and np.all(np.diff(sparsity) >= 0)
            await settle(pilot, lambda: "sparsity" in screen_text(app))
            await pilot.press("2")                                     # "then switch to L2 there"
            backend.pump(600)
            assert backend.state.snapshot.regularizer == ("L2", 0.05)
            w = backend.session.model.weight.data.ravel()
            irrelevant = np.abs(w[3:])                                  # 3 of 20 features matter
            assert irrelevant.max() < 0.05 and np.all(irrelevant > 0)   # small, none exactly zero
            assert backend.state.snapshot.layers[0].params["weight"].sparsity < 0.2
    run(body())


def test_hmc_logreg_doubling_the_step_size_drops_the_acceptance_and_halving_brings_it_back():
    backend = backend_with("hmc_logreg.py", curvature_every=0)
    hmc = backend.session.optimizer

    def acceptance(steps):
        before = hmc.accepted
        backend.pump(steps)
        return (hmc.accepted - before) / steps

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("space")
            assert acceptance(150) > 0.8                    # "about 0.9 here"
            await pilot.press("right_square_bracket")       # "press ] once"
            assert acceptance(150) < 0.25 and backend.session.lr == 0.5   # "only about 10%"
            await pilot.press("left_square_bracket")        # "[ comes back"
            assert acceptance(100) > 0.8
    run(body())


def test_bayes_linear_exact_doubling_the_lr_makes_sigma_jitter_more():
    backend = local("bayes_linear_exact.py")

    def sigmas(steps):
        out = []
        for _ in range(steps):
            backend.pump(1)
            out.append(backend.session.model.weight_sigma.ravel().copy())
        out = np.array(out)
        return out.std(0) / out.mean(0)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.press("space")
            backend.pump(2000)
            before = sigmas(1000)
            assert backend.session.state == "finished"
            await pilot.press("right_square_bracket", "t")   # ] once the run ended, then train on
            backend.pump(500)
            after = sigmas(2500)
            assert np.all(after > 1.3 * before)
    run(body())


def test_dead_relu_shows_the_dead_units_in_the_table_and_the_warning():
    backend = local("dead_relu.py", steps=5)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, lambda: "dead_relu" in screen_text(app))
            dead = backend.state.snapshot.layers[1].dead_fraction
            assert 0.7 < dead < 0.85 and f"dead {round(100 * dead)}%" in screen_text(app)
    run(body())


def test_newton_logreg_curvature_view_shows_the_gradient_norm_collapse():
    backend = local("newton_logreg.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("h", "space")
            backend.pump(12)
            await settle(pilot, lambda: "decrement" in screen_text(app), what="Newton's state")
            newton = backend.state.snapshot.optimizer_state
            assert newton is not None and newton["grad_norm"] < 1e-10, newton
    run(body())


def test_adam_vs_sgd_curvature_view_shows_the_effective_step_beside_the_hessian_diagonal():
    backend = local("adam_vs_sgd.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("space")
            backend.pump(120)
            await pilot.press("h")
            await settle(pilot, lambda: "Hᵢᵢ" in screen_text(app), what="the Hessian diagonal")
            text = screen_text(app)
            assert "η/(√v̂+ε)" in text or "effective" in text
    run(body())


async def data_view_first_and_last(app, pilot, backend, steps: int) -> tuple:
    """"Press d at the start, then space": the data views of step 0 and of the run's last step."""
    await pilot.press("d")
    await settle(pilot, lambda: type(app.screen).__name__ == "DataScreen")
    first = backend.state.data_view
    assert first.step == 0
    await pilot.press("space")
    backend.pump(steps)
    await settle(pilot, lambda: backend.state.data_view.step == steps, what="the view of the last step")
    return first, backend.state.data_view


def test_spirals_data_view_from_the_start_the_regions_wind_round_the_arms():
    """"Press d at the start, then space: ... from a third of the points classed right to nearly
    all of them.\""""
    backend = local("spirals_adam.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            first, last = await data_view_first_and_last(app, pilot, backend, 600)
            assert first.kind == "classes" and first.classes == 3
            assert 0.2 < first.accuracy < 0.5
            assert last.accuracy > 0.9 and len(set(last.predicted)) == 3
            await settle(pilot, lambda: f"accuracy {round(100 * last.accuracy)}%" in screen_text(app))
    run(body())


def test_sine_mlp_data_view_from_the_start_the_curve_bends_into_the_sine():
    """"Press d at the start, then space: ... a shallow curve far from them at first (mean squared
    error about 0.9) that bends into the sine ..., the error falling below 0.02.\""""
    backend = local("sine_mlp.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            first, last = await data_view_first_and_last(app, pilot, backend, 400)
            assert first.kind == "curve" and 0.7 < first.fit < 1.1
            assert last.fit < 0.02 and not started(backend, "vanishing_gradient")
            await settle(pilot, lambda: "mean squared error" in screen_text(app))
            assert not backend.state.warnings
    run(body())
