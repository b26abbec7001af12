"""One meaning for q on every screen: quit; escape goes back. Each screen as a person reaches it."""
from __future__ import annotations

import pytest

from calcml.tui.app import DebuggerApp
from tui_helpers import local, plain, run, screen_text, settle

# how each screen is opened from the main one, and its class name
SCREENS = [("enter", "InspectorScreen"), ("r", "RegularisationScreen"), ("h", "CurvatureScreen"),
           ("v", "BayesScreen"), ("question_mark", "HelpScreen"), ("s", "StepIntoScreen")]


@pytest.mark.parametrize("key,name", SCREENS, ids=[name for _, name in SCREENS])
def test_escape_goes_back_and_q_quits_from_every_screen(key, name):
    async def body():
        for leave in ("escape", "q"):
            backend = local(steps=3)
            app = DebuggerApp(backend)
            async with app.run_test(size=(120, 36)) as pilot:
                await settle(pilot, lambda: backend.state.snapshot is not None)
                await pilot.press(key)
                await settle(pilot, lambda: type(app.screen).__name__ == name, what=f"{name} open")
                await pilot.press(leave)
                if leave == "escape":
                    await settle(pilot, lambda: type(app.screen).__name__ != name, what=f"{name} closed")
                    assert len(app.screen_stack) == 1 and not app.quitting
                else:
                    await settle(pilot, lambda: app.quitting, what=f"q quits from {name}")
                    assert app.return_code == 0
    run(body())


def test_in_the_breakpoints_dialog_q_is_typed_and_escape_goes_back():
    """The one place q is not quit: where a breakpoint is typed, it is a letter."""
    async def body():
        backend = local(steps=3)
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot, lambda: backend.state.snapshot is not None)
            await pilot.press("b")
            await settle(pilot, lambda: type(app.screen).__name__ == "BreakpointsScreen")
            await pilot.press("q")
            await settle(pilot, lambda: app.screen.query_one("#bp-input").value == "q")
            assert not app.quitting
            await pilot.press("escape")
            await settle(pilot, lambda: len(app.screen_stack) == 1)
            await pilot.press("q")
            await settle(pilot, lambda: app.quitting)
    run(body())


def test_a_screenshot_without_a_downloads_folder_goes_to_the_working_directory(tmp_path, monkeypatch):
    from calcml.tui import app as app_module
    monkeypatch.setattr(app_module, "user_downloads_path", lambda: tmp_path / "no-such-Downloads")
    monkeypatch.chdir(tmp_path)

    async def body():
        backend = local(steps=1)
        app = DebuggerApp(backend)
        notes = []
        app.notify = lambda message, **kw: notes.append((message, kw.get("severity", "information")))
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, lambda: backend.state.snapshot is not None)
            app.action_screenshot()
            await settle(pilot, lambda: list(tmp_path.glob("*.svg")) and notes, what="the screenshot saved and said")
        saved = list(tmp_path.glob("*.svg"))
        assert len(saved) == 1 and "<svg" in saved[0].read_text()
        assert notes[-1][1] != "error" and str(tmp_path) in notes[-1][0]
    run(body())


def test_t_trains_a_finished_run_on_with_what_the_person_set():
    """Once a sample has run its steps, t trains as many steps again (at least 100), keeping the
    lr and regulariser chosen; the lr keys work again; t means nothing before the end."""
    async def body():
        backend = local(steps=0)
        session = backend.session
        session.max_steps = 30
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot, lambda: backend.state.snapshot is not None)
            assert app.check_action("train_on", ()) is False          # not finished: hidden
            await pilot.press("space")
            while backend.state.state != "finished":
                backend.pump(10)
                app.poll()
                await pilot.pause()
            assert backend.state.snapshot.step == 30 and app.check_action("lr_up", ()) is None
            app.refresh_bindings()
            await settle(pilot, lambda: "train on" in screen_text(app), what="t train on in the footer")
            backend.set_regularizer("L2", 1e-3)
            backend.pump(1)
            lr = session.lr
            await pilot.press("t")
            backend.pump(1)
            app.poll()
            await settle(pilot, lambda: backend.state.state == "running")
            assert session.max_steps == 130 and app.check_action("lr_up", ()) is True
            await pilot.press("left_square_bracket")                    # halve the lr: works again
            while backend.state.state != "finished":
                backend.pump(20)
                app.poll()
                await pilot.pause()
            assert backend.state.snapshot.step == 130
            assert session.lr == lr / 2 and backend.state.snapshot.regularizer == ("L2", 1e-3)
    run(body())


def test_a_pause_shows_the_weights_and_updates_of_the_step_it_stopped_at():
    """‖W‖ and upd/W are measured every few steps; the table shows the paused step's own."""
    import numpy as np

    from calcml.tui.format import num
    from tui_helpers import backend_with
    backend = backend_with("xor_mlp.py", detail_every=1000)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("space")
            backend.pump(30)
            weight = backend.session.model[0].weight.data
            before = weight.copy()
            backend.pump(1)
            await pilot.press("space")
            backend.pump(1)
            assert backend.session.state == "paused" and backend.session.step_count == 31
            norm = np.linalg.norm(weight)
            ratio = np.linalg.norm(weight - before) / norm
            shown = backend.state.snapshot.layers[0].params["weight"]
            assert np.isclose(shown.weight_norm, norm, rtol=1e-12) and np.isclose(shown.update_ratio, ratio, rtol=1e-12)
            await settle(pilot, lambda: num(ratio) in screen_text(app), what="upd/W of step 31 on screen")
            assert num(norm) in screen_text(app)
    run(body())


def test_ctrl_r_restarts_from_step_0_with_the_same_seed_keeping_what_was_chosen():
    """A restart loads the model file again with the run's seed and starts paused at step 0, with
    the lr and regulariser set by key and the breakpoints; the new run trains exactly as a fresh
    run of the file does with those settings from step 1."""
    import numpy as np

    from calcml.debug import Session, load_model_file
    from tui_helpers import SAMPLES
    backend = local("dead_relu.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            backend.add_breakpoint("step 30")
            await pilot.press("left_square_bracket")          # lr ÷ 2
            backend.set_regularizer("L2", 1e-3)
            await pilot.press("space")
            backend.pump(40)
            assert backend.session.step_count == 30 and backend.state.snapshot.hit is not None
            await settle(pilot, lambda: len(app.query_one("#warnings").lines) > 0, what="dead_relu warned")
            lr = backend.session.lr
            await pilot.press("ctrl+r")
            backend.pump(1)
            await settle(pilot, lambda: backend.state.snapshot is not None and backend.state.snapshot.step == 0,
                         what="back at step 0")
            s = backend.session
            assert s.step_count == 0 and s.state == "paused" and s.lr == lr
            assert s.regularizer.kind == "L2" and s.regularizer.lam == 1e-3
            assert [b["text"] for b in backend.state.breakpoints] == ["step 30"]
            assert not backend.state.warnings and len(backend.state.history.get("step", [])) == 0
            await settle(pilot, lambda: len(app.query_one("#warnings").lines) == 0, what="the old warnings gone")
            assert any(text.startswith("restarted from step 0 (seed 0), keeping 1 breakpoint, lr ")
                       for _, text in backend.state.logs)
            await pilot.press("space")
            backend.pump(40)
            assert s.step_count == 30 and backend.state.snapshot.hit is not None   # the breakpoint, kept
            fresh = Session(load_model_file(str(SAMPLES / "dead_relu.py")))
            fresh.set_lr(lr)
            fresh.set_regularizer("L2", 1e-3)
            fresh.step(30)
            for _ in range(30):
                fresh.tick()
            assert np.array_equal(s.history.series("loss"), fresh.history.series("loss"))
    run(body())


def test_a_training_script_is_not_restarted_and_says_why():
    from calcml.debug import Session, load_model_file
    from calcml.tui.backend import LocalBackend
    from tui_helpers import SAMPLES
    backend = LocalBackend(Session(load_model_file(str(SAMPLES / "xor_mlp.py"))))   # no rebuild: as a script's

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            assert app.check_action("restart", ()) is None                 # greyed in the footer
            app.action_restart()
            await pilot.pause()
            assert any("run it again" in str(n.message) for n in app._notifications)
            backend.restart()                                              # sent anyway: refused with the reason
            assert "cannot be restarted" in (backend.state.refused or "")
    run(body())


def test_a_view_opened_again_is_the_one_built_before_brought_up_to_date_and_rebuilt_after_a_restart():
    backend = local("lr_edge.py", steps=2)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.press("h")
            await settle(pilot, lambda: type(app.screen).__name__ == "CurvatureScreen")
            first = app.screen
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is app.default_screen)
            backend.step(3)                      # the run moves on while the view is closed
            backend.pump(3)
            await pilot.pause()
            await pilot.press("h")
            await settle(pilot, lambda: app.screen is first, what="the same view back")
            await settle(pilot, lambda: "step 5" in screen_text(app), what="the view showing step 5")
            await pilot.press("escape")
            await pilot.press("ctrl+r")
            backend.pump(1)
            await settle(pilot, lambda: backend.state.snapshot is not None and backend.state.snapshot.step == 0)
            await pilot.press("h")
            await settle(pilot, lambda: type(app.screen).__name__ == "CurvatureScreen")
            assert app.screen is not first       # built again for the new run
            assert "step 0" in screen_text(app)
    run(body())


KEPT_VIEWS = {"h": "CurvatureScreen", "r": "RegularisationScreen", "v": "BayesScreen", "d": "DataScreen",
         "enter": "InspectorScreen"}


async def open_view(app, pilot, key):
    """Press `key` and wait until its view is on top and has drawn."""
    await pilot.press(key)
    await settle(pilot, lambda: type(app.screen).__name__ == KEPT_VIEWS[key], what=f"the view {key} opens")
    await pilot.pause(0.2)


@pytest.mark.parametrize("key", list(KEPT_VIEWS))
def test_a_kept_view_reopened_after_a_resize_looks_as_a_fresh_one_does(key):
    texts = {}

    async def fresh():
        app = DebuggerApp(local("xor_mlp.py", steps=5), clock=lambda: 1e9)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_view(app, pilot, key)
            texts["fresh"] = screen_text(app)

    async def kept():
        app = DebuggerApp(local("xor_mlp.py", steps=5), clock=lambda: 1e9)
        async with app.run_test(size=(160, 48)) as pilot:
            await open_view(app, pilot, key)
            first = app.screen
            texts["wide"] = screen_text(app)
            await pilot.press("escape")
            await pilot.resize_terminal(80, 24)
            await pilot.pause(0.2)
            await open_view(app, pilot, key)
            assert app.screen is first                    # kept, not built again
            texts["kept"] = screen_text(app)

    run(fresh())
    run(kept())
    assert texts["kept"] == texts["fresh"]
    assert texts["wide"] != texts["fresh"]                # the wide layout was another one


def test_the_inspector_opened_again_on_another_layer_shows_that_layer():
    backend = local("deep_sigmoid.py", steps=3)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("enter")                       # the first row: layer 0
            await settle(pilot, lambda: type(app.screen).__name__ == "InspectorScreen")
            first = app.screen
            assert first.layer_name == "0"
            await pilot.press("escape")
            await settle(pilot, lambda: app.screen is app.default_screen)
            await pilot.press("down", "down", "enter")        # layer 2
            await settle(pilot, lambda: app.screen is first and first.layer_name == "2")
            assert first.links and first.links[-1].layer == "2"      # the chain now ends at layer 2
            title = plain(first.query_one("#insp-title"))
            assert "2" in title and "Linear" in title
    run(body())


def test_a_view_asked_for_from_the_view_above_it_comes_back_to_the_top():
    backend = local("bayes_regression.py", steps=3)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("h")
            await settle(pilot, lambda: type(app.screen).__name__ == "CurvatureScreen")
            curvature = app.screen
            await pilot.press("v")                            # the Bayesian view, over the curvature view
            await settle(pilot, lambda: type(app.screen).__name__ == "BayesScreen")
            await pilot.press("h")                            # back to the curvature view under it
            await settle(pilot, lambda: app.screen is curvature)
            assert len(app.screen_stack) == 2
    run(body())
