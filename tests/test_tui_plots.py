"""The main screen's loss plot built in a thread: the same picture as a build on the event loop,
the latest data wins, and nothing is built twice at once (the gradient flow is plain text, drawn
on the event loop: tests/test_tui_gradflow.py)."""
import threading

from calcml.tui.app import DebuggerApp
from calcml.tui.widgets.loss_plot import LossPlot
from tui_helpers import local, run, settle


def built(plot) -> bool:
    """The plot's thread has delivered a figure for the current data."""
    return plot._built is not None and plot._built[2] is plot._draw and not plot._building


def test_background_build_shows_what_a_foreground_build_shows():
    texts = {}
    for background in (False, True):
        backend = local("deep_sigmoid.py", steps=30)

        async def body():
            app = DebuggerApp(backend, clock=lambda: 1e9, live=background)
            async with app.run_test(size=(140, 40)) as pilot:
                plot = app.query_one(LossPlot)
                assert plot.background is background
                # the screen laid out with every step's data (the plot's size settles with the
                # layer table's), then the same figure asked for at that size in both apps
                await settle(pilot, lambda: plot._history is not None and len(plot._history["step"]) == 30,
                             what="the 30 steps in the loss plot")
                await pilot.pause()
                plot.show(plot._history)
                if background:
                    await settle(pilot, lambda: built(plot) and plot._built[1] == (plot.size.width, plot.size.height),
                                 what="the loss plot built in the background")
                texts[background] = (plot.size, plot.render().plain)
        run(body())
    assert texts[True] == texts[False]
    assert "step" in texts[True][1]


def test_a_figure_asked_for_during_a_build_waits_and_the_latest_wins(monkeypatch):
    backend = local("xor_mlp.py", steps=5)
    gate = threading.Event()
    builds = []
    original = LossPlot._build

    def slow_build(self, draw, size, theme):
        builds.append(draw)
        gate.wait(5)
        original(self, draw, size, theme)

    monkeypatch.setattr(LossPlot, "_build", slow_build)

    async def body():
        app = DebuggerApp(backend, clock=lambda: 1e9, live=True)
        async with app.run_test(size=(140, 40)) as pilot:
            plot = app.query_one(LossPlot)
            # the app's first draw starts a build (its thread has entered _build, not just been started)
            await settle(pilot, lambda: plot._building and builds, what="the first build to start")
            history = backend.state.history
            first = len(builds)
            assert plot._building
            plot.show(history)              # two more figures while one is building
            plot.show(history)
            latest = plot._draw
            assert len(builds) == first      # nothing started alongside the running build
            gate.set()
            await settle(pilot, lambda: built(plot), what="the latest figure built in the background")
            assert builds[-1] is latest      # the waiting build was the latest figure
            assert len(builds) == first + 1  # and only one more was built
    run(body())


def test_a_live_app_leaves_its_start_up_out_of_later_garbage_collections():
    import gc
    backend = local("xor_mlp.py", steps=1)

    async def body():
        gc.unfreeze()
        app = DebuggerApp(backend, live=True)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(0.1)
            assert gc.get_freeze_count() > 10_000    # Textual and the widgets, frozen at mount
        gc.unfreeze()
        plain = DebuggerApp(local("xor_mlp.py", steps=1))
        async with plain.run_test(size=(120, 36)) as pilot:
            await pilot.pause(0.1)
            assert gc.get_freeze_count() == 0        # tests' apps: untouched
    run(body())


def test_a_live_app_holds_garbage_collection_off_while_a_screen_opens_or_closes_and_then_lets_it_run(monkeypatch):
    import gc
    from calcml.tui import app as app_module
    backend = local("xor_mlp.py", steps=1)
    seen = []      # gc.isenabled() at each screen change, as the new screen is put on top
    on_change = DebuggerApp._on_screen_change
    monkeypatch.setattr(DebuggerApp, "_on_screen_change",
                        lambda self, screen: (seen.append(gc.isenabled()), on_change(self, screen)))

    async def switch(pilot, key):
        count = len(seen)
        await pilot.press(key)
        await settle(pilot, lambda: len(seen) > count, what=f"the screen change after {key}")

    async def body():
        app = DebuggerApp(backend, live=True)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(0.1)
            for key in ("h", "escape", "question_mark", "escape"):
                await settle(pilot, gc.isenabled, what="collections on before the switch")
                await switch(pilot, key)
                assert seen[-1] is False      # composed and drawn without a collection
                await settle(pilot, gc.isenabled, what="collections to run again after the switch")
            gc.disable()                      # held by someone else (Textual scrolling): left alone
            await switch(pilot, "h")
            await pilot.pause(2 * app_module.GC_HOLD_S)
            assert not gc.isenabled()
            gc.enable()
            monkeypatch.setattr(app_module, "GC_HOLD_S", 600.0)
            await switch(pilot, "escape")
            assert not gc.isenabled()
            await pilot.press("q")            # leaving while held: collections run again at once
        assert gc.isenabled()
    try:
        run(body())
    finally:
        gc.enable()


def test_loss_axis_labels_are_short_and_a_loss_spanning_decades_is_on_a_log_scale():
    import re
    import numpy as np
    from calcml.tui.widgets.loss_plot import short
    assert [short(x) for x in (0.25, 1.0, 3200.0, 7520941226841268702674944.0, -0.0123, 1e-7, 0.0)] == [
        "0.25", "1", "3.2k", "7.5e24", "-0.0123", "1e-7", "0"]
    diverging = {"step": np.arange(1, 51), "loss": np.geomspace(1.0, 7.52e24, 50)}
    backend = local("xor_mlp.py", steps=2)

    def labels(text):
        return [line.split("┤")[0].strip() for line in text.splitlines() if "┤" in line]

    async def body():
        app = DebuggerApp(backend, clock=lambda: 1e9)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            plot = app.query_one(LossPlot)
            plot.show(diverging)                             # auto: 24 decades, a log scale
            text = plot.render().plain
            assert "loss (log scale)" in text and {"1e0", "1e20"} <= set(labels(text))
            assert all(len(label) <= 6 for label in labels(text)), labels(text)
            plot.show({"step": np.arange(1, 4), "loss": np.array([0.9, 0.5, 0.25])})   # under 100×: linear
            assert "log scale" not in plot.render().plain
            app.backend.state.history = diverging
            for scale in ("log", "linear", "auto"):
                await pilot.press("l")
                await settle(pilot, lambda: plot.scale == scale)
                text = plot.render().plain
                assert ("log scale" in text) == (scale != "linear"), scale
                assert all(len(label) <= 6 for label in labels(text)), (scale, labels(text))
            await pilot.press("l", "l")                      # linear: 7.5e24 at the top, not 25 digits
            await settle(pilot, lambda: plot.scale == "linear")
            assert "7.5e24" in labels(plot.render().plain) and not re.search(r"\d{8}", plot.render().plain)
    run(body())
