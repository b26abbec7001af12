"""Every screen's footer fits 80 columns, and the main screen's keys it leaves out still work."""
import pytest

from calcml.tui.app import DebuggerApp
from calcml.tui.screens.breakpoints import BreakpointsScreen
from calcml.tui.screens.inspector import InspectorScreen
from calcml.tui.screens.regularisation import RegularisationScreen
from tui_helpers import local, run, screen_text, settle


@pytest.mark.parametrize("keys,screen", [(["down", "enter"], InspectorScreen), (["r"], RegularisationScreen)])
def test_the_footer_fits_80_columns(keys, screen):
    backend = local("deep_sigmoid.py", steps=3)

    async def body():
        app = DebuggerApp(backend, clock=lambda: 1e9)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            for key in keys:
                await pilot.press(key)
            await pilot.pause(0.3)
            assert isinstance(app.screen, screen)
            footer = screen_text(app).rstrip().splitlines()[-1]
            assert footer.rstrip().endswith("quit") and "help" in footer
    run(body())


def test_a_key_left_out_of_the_footer_still_works():
    backend = local("deep_sigmoid.py", steps=3)

    async def body():
        app = DebuggerApp(backend, clock=lambda: 1e9)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            await pilot.press("down", "enter")
            await pilot.pause(0.2)
            assert isinstance(app.screen, InspectorScreen)
            await pilot.press("b")                      # not in the inspector's footer at 80 columns
            await pilot.pause(0.2)
            assert isinstance(app.screen, BreakpointsScreen)
    run(body())


def test_the_main_footer_fits_80_columns_before_and_after_the_run_ends():
    """While the run can train, restart is left out at 80 columns (it works: ctrl+r); once it has
    ended, run/pause and step, which can do nothing then, make room for train on and restart."""
    backend = local("xor_mlp.py", steps=3)

    async def body():
        app = DebuggerApp(backend, clock=lambda: 1e9)
        async with app.run_test(size=(80, 24)) as pilot:
            def footer():
                return screen_text(app).rstrip().splitlines()[-1]
            await settle(pilot, lambda: "run/pause" in footer(), what="the footer composed")
            assert footer().rstrip().endswith("quit") and "restart" not in footer()
            await pilot.press("space")
            backend.pump(400)
            assert backend.state.state == "finished"
            # the footer is composed again once the app has taken in the new state
            await settle(pilot, lambda: "train on" in footer(), what="train on in the footer")
            assert footer().rstrip().endswith("quit") and "^r restart" in footer() and "run/pause" not in footer()
            await pilot.resize_terminal(160, 48)
            await settle(pilot, lambda: "run/pause" in footer(), what="run/pause back at 160 columns")
            assert "^r restart" in footer() and "train on" in footer()
    run(body())


@pytest.mark.parametrize("name, shown, left_out", [
    ("xor_mlp.py", ["d data"], ["v post"]),            # 2-D inputs, no posterior
    ("hmc_logreg.py", ["v post"], ["d data"]),         # a posterior, and 2-D inputs: not room for both
    ("l1_vs_l2.py", [], ["v post", "d data"]),         # nothing for either view to draw
])
def test_at_80_columns_the_footer_keeps_the_views_this_model_has_something_for(name, shown, left_out):
    backend = local(name, steps=3)

    async def body():
        app = DebuggerApp(backend, clock=lambda: 1e9)
        async with app.run_test(size=(80, 24)) as pilot:
            def footer():
                return " ".join(screen_text(app).rstrip().splitlines()[-1].split())

            def as_promised():
                text = footer()   # (the last line is the footer once it is drawn: it ends with quit)
                return (text.endswith("quit") and all(key in text for key in shown)
                        and not any(key in text for key in left_out))
            # (the footer is composed again once the app has the model's information)
            await settle(pilot, as_promised, what=f"{shown} and not {left_out} in the footer")
            assert "h curv" in footer()
            await pilot.press("d")                  # left out or not, the key works
            await pilot.pause(0.2)
            assert type(app.screen).__name__ == "DataScreen"
    run(body())
