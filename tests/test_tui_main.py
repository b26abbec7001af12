"""The main screen, driven with Pilot: every key, the warnings pane, the model's output, errors."""
import pytest

from calcml.debug import Session, load_model_file
from calcml.debug.session import SessionConfig
from calcml.tui.app import DebuggerApp
from calcml.tui.backend import LocalBackend, ProcessBackend
from calcml.tui.format import num
from tui_helpers import SAMPLES, local, run, screen_text, settle


def test_header_and_layer_table_show_the_snapshot():
    backend = local("deep_sigmoid.py", steps=5)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause(0.2)
            table = app.query_one("#layers")
            assert table.row_count == len(backend.state.snapshot.layers) == 19
            svg = screen_text(app)
            assert "deep_sigmoid" in svg and "PAUSED" in svg and "step 5" in svg
            # the first layer's gradient norm, formatted as in the table
            from calcml.tui.format import num
            assert num(backend.state.snapshot.layers[0].params["weight"].grad_norm) in svg
    run(body())


def test_space_runs_and_pauses_n_steps_c_continues():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.press("n")
            backend.pump(3)
            assert backend.session.step_count == 2            # n: exactly one more step
            await pilot.press("space")                        # run
            backend.pump(5)
            assert backend.session.state == "running" and backend.session.step_count == 7
            await pilot.press("space")                        # pause
            backend.pump(5)
            assert backend.session.state == "paused" and backend.session.step_count == 7
            await pilot.press("c")                            # continue
            backend.pump(2)
            assert backend.session.state == "running"
    run(body())


def test_learning_rate_keys_halve_and_double():
    backend = local("xor_mlp.py", steps=1)
    lr = backend.session.lr

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.press("right_square_bracket")
            backend.pump(1)
            assert backend.session.lr == pytest.approx(2 * lr)
            backend.step(1)
            backend.pump(1)
            await pilot.pause(0.15)
            await pilot.press("left_square_bracket", "left_square_bracket")
            backend.pump(1)
            assert backend.session.lr == pytest.approx(lr / 2)
    run(body())


def test_keys_that_do_nothing_now_are_disabled():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(0.15)
            assert app.check_action("next_step", ()) is True      # paused: n works
            backend.run()
            backend.pump(1)
            await pilot.pause(0.15)
            assert app.check_action("next_step", ()) is None      # running: greyed
            assert app.check_action("step_into", ()) is None
            assert app.check_action("toggle_plots", ()) is False  # wide: plots are always shown
    run(body())


def test_narrow_terminal_swaps_table_and_plots_with_g():
    backend = local("xor_mlp.py", steps=3)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            assert not app.query_one("#plots").display
            assert app.query_one("#layers").display
            await pilot.press("g")
            await pilot.pause(0.4)
            assert app.query_one("#plots").display and not app.query_one("#left").display
            await pilot.press("g")
            await pilot.pause(0.1)
            assert app.query_one("#left").display
    run(body())


def test_warnings_pane_lists_warnings_as_they_start():
    backend = local("deep_sigmoid.py", steps=2)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause(0.2)
            log = app.query_one("#warnings")
            text = "\n".join(str(line.text) for line in log.lines)
            assert "vanishing_gradient" in text and "chain-rule product" in text
            assert text.count("vanishing_gradient") == len(backend.state.warnings)
    run(body())


def test_help_and_escape():
    backend = local("xor_mlp.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape")
            assert type(app.screen).__name__ == "Screen"
    run(body())


@pytest.mark.parametrize("key", ["q", "ctrl+q", "ctrl+c"])
def test_quit_keys(key):
    backend = local("xor_mlp.py")

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press(key)
            await pilot.pause(0.1)
        return app.return_value
    assert run(body()) == 0


def test_an_error_in_the_model_stops_with_the_reason_and_keeps_what_was_recorded(tmp_path):
    model = tmp_path / "breaks.py"
    model.write_text(
        "import numpy as np\nimport calcml as cm\n"
        "model = cm.nn.Sequential(cm.nn.Linear(2, 3), cm.nn.Tanh(), cm.nn.Linear(3, 1))\n"
        "calls = []\n"
        "def loss(p, y):\n"
        "    calls.append(1)\n"
        "    if len(calls) > 3:\n"
        "        raise RuntimeError('the data went bad')\n"
        "    return ((p - y) ** 2).mean()\n"
        "data = (np.ones((4, 2)), np.zeros((4, 1)))\n")
    # curvature off: measuring it calls loss() too, and this loss counts its calls
    backend = LocalBackend(Session(load_model_file(str(model)), SessionConfig(curvature_every=0)))

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            backend.run()
            backend.pump(10)
            await pilot.pause(0.2)
            svg = screen_text(app)
            assert "STOPPED" in svg and "error" in svg
            assert backend.state.snapshot.step == 3            # what was recorded is still there
            assert app.query_one("#layers").row_count == 3
            await pilot.press("enter")                         # and can still be inspected
            await pilot.pause(0.1)
            assert type(app.screen).__name__ == "InspectorScreen"
    run(body())


def test_the_model_files_prints_go_to_the_log_pane(tmp_path):
    model = tmp_path / "chatty.py"
    model.write_text(
        "import numpy as np\nimport calcml as cm\n"
        "print('hello from the model file')\n"
        "model = cm.nn.Linear(2, 1)\n"
        "def loss(p, y):\n    print('computing the loss')\n    return ((p - y) ** 2).mean()\n"
        "data = (np.ones((4, 2)), np.zeros((4, 1)))\nsteps = 3\n")
    backend = ProcessBackend(str(model))

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot, lambda: backend.state.state == "finished", 20)
            app.query_one("#panes").active = "log-tab"
            await pilot.pause(0.3)
            log = app.query_one("#log")
            text = "\n".join(str(line.text) for line in log.lines)
            assert "hello from the model file" in text and "computing the loss" in text
            assert "hello from the model file" not in screen_text(app).split("Model output")[0]
            assert backend.state.state == "finished"
            await pilot.press("q")
    run(body())
    assert backend.process.wait(5) == 0


def test_a_killed_training_process_leaves_the_interface_usable(tmp_path):
    backend = ProcessBackend(str(SAMPLES / "deep_sigmoid.py"))

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot, lambda: backend.state.snapshot is not None and backend.state.snapshot.step >= 2, 20)
            backend.process.kill()
            await settle(pilot, lambda: backend.state.state == "stopped", 10)
            assert backend.state.stop["reason"] == "exited"
            assert "the training process was killed by SIGKILL at step" in backend.state.stop["detail"]
            await settle(pilot, lambda: "STOPPED" in screen_text(app))
            await pilot.press("enter")
            await settle(pilot, lambda: type(app.screen).__name__ == "InspectorScreen")
    run(body())


def test_main_screen_snapshot(snap_compare):
    backend = local("deep_sigmoid.py", steps=12)
    assert snap_compare(DebuggerApp(backend), terminal_size=(120, 36))


def test_main_screen_snapshot_160x48(snap_compare):
    """The table as tall as its rows, the warnings pane taking the rest (not 7 lines under empty rows)."""
    backend = local("deep_sigmoid.py", steps=12)
    assert snap_compare(DebuggerApp(backend), terminal_size=(160, 48))


def test_main_screen_snapshot_80x24(snap_compare):
    backend = local("deep_sigmoid.py", steps=12)
    assert snap_compare(DebuggerApp(backend), terminal_size=(80, 24))


def test_command_palette_offers_the_debugger_actions_and_runs_them():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            titles = {c.title: c for c in app.get_system_commands(app.screen)}
            assert {"Pause / resume training", "Step into one iteration", "Switch L2 regularisation on", "Curvature view",
                    "Halve the learning rate", "Quit"} <= set(titles)
            titles["Switch L2 regularisation on"].callback()
            backend.step(1)
            backend.pump(2)
            assert backend.session.regularizer is not None and backend.session.regularizer.kind == "L2"
            await pilot.press("ctrl+p")
            await pilot.pause(0.2)
            assert "CommandPalette" in type(app.screen).__name__
    run(body())


def test_the_trend_column_takes_the_width_the_numbers_leave_it():
    """At 80 columns the ‖∇W‖ trend narrows so that the table fits (with a regulariser's ‖∇pen‖
    column; without one the column is left out and the trend fits whole); at 160 it has its full
    width."""
    from calcml.tui.text_layers import TREND_WIDTH
    from calcml.tui.widgets.layers import LayerTable

    async def body(size, regularized=False):
        backend = local("xor_mlp.py")
        if regularized:
            backend.set_regularizer("L2", 0.01)
        backend.step(30)
        backend.pump(30)
        app = DebuggerApp(backend)
        async with app.run_test(size=size) as pilot:
            table = app.query_one(LayerTable)
            await settle(pilot, lambda: table.row_count == 3)
            await pilot.pause()
            trend = table.get_cell("0", "trend")
            columns = [key.value for key in table.columns]
            return table.trend_width, table.virtual_size.width, table.size.width, str(trend), columns

    width, needed, has, trend, columns = run(body((80, 24), regularized=True))
    assert "pen" in columns and width < TREND_WIDTH and needed <= has and len(trend) == width
    width, needed, has, trend, columns = run(body((80, 24)))
    assert "pen" not in columns and width == TREND_WIDTH and needed <= has and len(trend) == width
    width, needed, has, trend, columns = run(body((160, 48)))
    assert width == TREND_WIDTH and len(trend) == TREND_WIDTH


def test_the_penalty_column_is_shown_while_a_regulariser_is_set():
    """‖∇pen‖ is 0 on every row without a regulariser: the column is left out then, shown from
    the step a regulariser is set (as the r view sets it), with the penalty's numbers, and left
    out again once it is removed."""
    from calcml.tui.widgets.layers import LayerTable
    backend = local("xor_mlp.py", steps=3)

    async def scenario():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            table = app.query_one(LayerTable)

            def columns():
                return [key.value for key in table.columns]
            await settle(pilot, lambda: table.row_count == 3)
            assert "pen" not in columns() and "health" in columns()
            backend.set_regularizer("L2", 0.01)
            backend.step(1)
            backend.pump(1)
            await settle(pilot, lambda: "pen" in columns() and table.row_count == 3, what="the ‖∇pen‖ column")
            w = backend.state.snapshot.layers[0].params["weight"]
            assert w.penalty_grad_norm > 0 and str(table.get_cell("0", "pen")) == num(w.penalty_grad_norm)
            backend.set_regularizer("none")
            backend.step(1)
            backend.pump(1)
            await settle(pilot, lambda: "pen" not in columns() and table.row_count == 3, what="the column gone")

    run(scenario())
