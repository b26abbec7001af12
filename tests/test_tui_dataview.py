"""The data view (key d): the training points and the model's decision surface or fitted curve,
redrawn as the run trains; what it says for inputs it cannot draw; [ ] change the lr from it;
what it looks like at 80x24 and 160x48."""
from __future__ import annotations

from rich.text import Text

from calcml.tui.app import DebuggerApp
from calcml.tui.format import num
from calcml.tui.screens.data import DataPicture, DataScreen
from calcml.tui.text_dataview import CLASS_COLOURS, class_colours, picture
from tui_helpers import local, plain, run, screen_text, settle

App = DebuggerApp


async def open_view(app, pilot) -> DataScreen:
    await pilot.pause()
    await pilot.press("d")
    await settle(pilot, lambda: isinstance(app.screen, DataScreen), what="the data view open")
    return app.screen


def test_d_opens_the_view_on_the_latest_surface_and_it_follows_the_steps_taken():
    backend = local("xor_mlp.py", steps=3)

    async def go():
        app = App(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_view(app, pilot)
            shown = screen.query_one(DataPicture)
            await settle(pilot, lambda: shown.view is not None and shown.view.step == 3)
            title = " ".join(plain(screen.query_one("#data-title")).split())
            assert "xor_mlp" in title and "step 3" in title
            assert f"accuracy {round(100 * shown.view.accuracy)}% on the 200 training points shown" in title
            assert "class 0" in screen_text(app) and "σ(z)" in screen_text(app)
            for _ in range(2):                 # n steps from the view: each paused step is drawn
                await pilot.press("n")
                await pilot.pause()
                backend.pump(1)
            await settle(pilot, lambda: shown.view.step == 5, what="the view of step 5")
            assert shown.view is backend.state.data_view
            await pilot.press("escape")
            await settle(pilot, lambda: not isinstance(app.screen, DataScreen))
            await pilot.press("d")
            await settle(pilot, lambda: isinstance(app.screen, DataScreen))
            await pilot.press("d")             # d closes it too
            await settle(pilot, lambda: not isinstance(app.screen, DataScreen))

    run(go())


def test_the_picture_has_the_classes_colours_and_the_points_marks():
    backend = local("dead_relu.py", steps=60)
    view = backend.state.data_view
    drawn = picture(view, 60, 30)
    assert isinstance(drawn, Text)
    lines = drawn.plain.split("\n")
    assert len(lines) == 30 and {len(line) for line in lines} == {60}   # dead_relu's plane is square
    # every point drawn, ✕ exactly where the model's class differs from the point's
    wrong = sum(1 for i, point in enumerate(view.points) if _cell_class(view, point) != view.labels[i])
    assert ("✕" in drawn.plain) == (wrong > 0)
    assert drawn.plain.count("●") + drawn.plain.count("✕") <= len(view.points)
    # the ground's colours are the predicted classes' colours, dimmed by how sure the model is
    colours = class_colours(view)
    for cell, klass in zip(colours[:50], view.predicted[:50]):
        target = CLASS_COLOURS[klass]
        assert max(abs(int(a) - b) for a, b in zip(cell, target)) <= max(target)   # a shade of it


def _cell_class(view, point) -> int:
    (x0, x1), (y0, y1) = view.x_range, view.y_range
    c = min(int((point[0] - x0) / (x1 - x0) * view.columns), view.columns - 1)
    r = min(int((y1 - point[1]) / (y1 - y0) * view.rows), view.rows - 1)
    return view.predicted[r * view.columns + c]


def test_a_model_with_other_inputs_is_told_why_there_is_no_picture():
    async def go():
        app = App(local("l1_vs_l2.py", steps=2))
        async with app.run_test(size=(100, 30)) as pilot:
            await open_view(app, pilot)
            await settle(pilot, lambda: "the inputs have 20 features" in screen_text(app))
            assert "one feature (a fitted curve) or two (the classes over the plane)" in " ".join(
                screen_text(app).split())

    run(go())


def test_the_lr_keys_work_from_the_view_and_the_next_view_is_drawn_with_it():
    backend = local("spirals_adam.py", steps=2)
    lr = backend.session.lr

    async def go():
        app = App(backend)
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await open_view(app, pilot)
            await pilot.press("left_square_bracket")
            title = " ".join(plain(screen.query_one("#data-title")).split())
            assert "÷2" in title and "from the next step" in title
            backend.step(1)
            backend.pump(1)
            await settle(pilot, lambda: screen.query_one(DataPicture).view.step == 3)
            assert backend.session.lr == lr / 2
            title = " ".join(plain(screen.query_one("#data-title")).split())
            assert "from the next step" not in title and f"lr {num(lr / 2)}" in title

    run(go())




def test_a_one_feature_regression_shows_its_curve_and_error():
    backend = local("sine_mlp.py", steps=150)

    async def go():
        app = App(backend)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await open_view(app, pilot)
            await settle(pilot, lambda: screen.query_one(DataPicture).view is not None)
            text = " ".join(screen_text(app).split())
            assert "mean squared error" in text and "the model's fitted curve" in text
            assert "●" in text and any(0x2800 < ord(ch) <= 0x28FF for ch in text)   # points and the curve

    run(go())


# -- what it looks like (pytest-textual-snapshot; --snapshot-update to accept a change) ---------

def test_snapshot_data_view_spirals_160x48(snap_compare):
    assert snap_compare(App(local("spirals_adam.py", steps=150)), press=["d"], terminal_size=(160, 48))


def test_snapshot_data_view_xor_80x24(snap_compare):
    assert snap_compare(App(local("xor_mlp.py", steps=60)), press=["d"], terminal_size=(80, 24))


def test_snapshot_data_view_sine_curve_160x48(snap_compare):
    assert snap_compare(App(local("sine_mlp.py", steps=300)), press=["d"], terminal_size=(160, 48))
