"""The breakpoints dialog, driven with Pilot: list, add, refuse with the reason, remove, and pause."""
from calcml.tui.app import DebuggerApp
from calcml.tui.backend import ProcessBackend
from calcml.tui.screens.breakpoints import BreakpointsScreen, short_reason
from tui_helpers import SAMPLES, local, plain, run, settle


def make_app(backend) -> DebuggerApp:
    return DebuggerApp(backend, clock=lambda: 0.0)


async def open_dialog(app, pilot) -> BreakpointsScreen:
    await pilot.press("b")
    screen = app.screen
    assert isinstance(screen, BreakpointsScreen)
    return screen


async def add(app, pilot, text: str) -> None:
    box = app.screen.query_one("#bp-input")
    box.value = ""
    await pilot.press(*text)
    await pilot.press("enter")
    app.poll()
    await pilot.pause()


def rows(screen) -> list:
    table = screen.query_one("#bp-table")
    return [(str(table.get_row_at(i)[0]), str(table.get_row_at(i)[1])) for i in range(table.row_count)]


def test_b_opens_the_dialog_with_the_input_focused_and_a_hint():
    async def body():
        app = make_app(local())
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_dialog(app, pilot)
            assert screen.query_one("#bp-input").has_focus
            assert screen.query_one("#bp-empty").display and not screen.query_one("#bp-table").display
            hint = plain(screen.query_one("#bp-hint"))
            assert "step N" in hint and "every N" in hint and "warning kind" in hint and "loss > 2" in hint
            names = plain(screen.query_one("#bp-names"))
            assert "exploding_gradient" in names and "0.weight" in names and "grad_norm" in names
            assert 'grad_norm("0.weight")' in screen.query_one("#bp-input").placeholder
            await pilot.press("escape")
            assert not isinstance(app.screen, BreakpointsScreen)
    run(body())


def test_adding_a_condition_lists_it_and_clears_the_input():
    backend = local()

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_dialog(app, pilot)
            await add(app, pilot, "loss > 2")
            assert rows(screen) == [("1", "when loss > 2")]
            assert screen.query_one("#bp-input").value == "" and screen.error is None
            assert not screen.query_one("#bp-error").display
            assert [b.text for b in backend.session.breakpoints] == ["loss > 2"]
            await add(app, pilot, 'grad_norm("0.weight") < 1e-6')
            await add(app, pilot, "exploding_gradient")
            await add(app, pilot, "every 50")
            assert rows(screen) == [("1", "when loss > 2"), ("2", 'when grad_norm("0.weight") < 1e-6'),
                                    ("3", "on exploding_gradient"), ("4", "every 50 steps")]
    run(body())


def test_a_refused_breakpoint_shows_the_reason_in_red_and_keeps_the_text():
    backend = local()

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_dialog(app, pilot)
            await add(app, pilot, "loss >")
            box, error = screen.query_one("#bp-input"), screen.query_one("#bp-error")
            assert box.value == "loss >"                       # kept, to be corrected
            assert error.display and "'loss >' does not parse" in plain(error)
            assert screen.error == backend.state.breakpoint_error
            red, theirs = app.current_theme.to_color_system().error, error.styles.color   # $error: red
            assert max(abs(a - b) for a, b in zip(red.rgb, theirs.rgb)) <= 2 and theirs.r > 2 * theirs.g
            assert rows(screen) == [] and len(backend.session.breakpoints) == 0
            # correct it in place: the error goes away and the breakpoint is listed
            await pilot.press(" ", "2", "enter")
            app.poll()
            await pilot.pause()
            assert rows(screen) == [("1", "when loss > 2")]
            assert not error.display and box.value == ""
    run(body())


def test_a_name_the_model_does_not_have_is_refused_with_the_names_it_has():
    async def body():
        app = make_app(local())
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_dialog(app, pilot)
            await add(app, pilot, 'grad_norm("layers.0.weight") < 1')
            text = plain(screen.query_one("#bp-error"))
            assert "no parameter named 'layers.0.weight'" in text and "0.weight" in text
    run(body())


def test_empty_enter_asks_for_a_breakpoint_and_sends_nothing():
    backend = local()

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_dialog(app, pilot)
            version = backend.state.versions["breakpoints"]
            await pilot.press("enter")
            assert "type a breakpoint first" in plain(screen.query_one("#bp-error"))
            assert backend.state.versions["breakpoints"] == version
    run(body())


def test_the_long_list_of_accepted_forms_is_shortened_only_when_the_names_are_shown():
    from calcml.debug.breakpoints import HELP
    error = f"'dead' is not a warning kind; give {HELP}"
    assert short_reason(error) == "'dead' is not a warning kind (the names you can use are listed below)"
    assert short_reason("no parameter named 'x'") == "no parameter named 'x'"

    async def body(size):
        app = make_app(local())
        async with app.run_test(size=size) as pilot:
            screen = await open_dialog(app, pilot)
            await add(app, pilot, "dead")
            return screen.query_one("#bp-names").display, plain(screen.query_one("#bp-error"))

    shown, text = run(body((100, 32)))
    assert shown and "listed below" in text and "vanishing_gradient" not in text
    shown, text = run(body((80, 24)))
    assert not shown and "vanishing_gradient" in text          # short terminal: the full reason instead


def test_step_3_pauses_the_run_at_step_3():
    backend = local()

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            await open_dialog(app, pilot)
            await add(app, pilot, "step 3")
            await pilot.press("escape")
            await pilot.press("space")                          # run
            backend.pump(10)
            app.poll()
            await pilot.pause()
            state = backend.state
            assert state.state == "paused" and state.snapshot.step == 3
            assert backend.session.step_count == 3
            assert state.snapshot.hit is not None and state.snapshot.hit.text == "step 3"
            screen = await open_dialog(app, pilot)              # the dialog marks the one that fired
            table = screen.query_one("#bp-table")
            assert "paused here (step 3)" in str(table.get_row_at(0)[2])
    run(body())


def test_the_main_screen_says_which_breakpoint_paused_the_run_and_the_values_that_made_it_true():
    backend = local()

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(160, 40)) as pilot:
            await open_dialog(app, pilot)
            await add(app, pilot, 'grad_norm("0.weight") > 0 and step == 4')
            await pilot.press("escape", "space")
            backend.pump(10)
            app.poll()
            await settle(pilot, lambda: backend.state.state == "paused")
            hit = backend.state.snapshot.hit
            g = backend.state.snapshot.layers[0].params["weight"].grad_norm
            assert hit.step == 4 and f"{g:.4g}" in hit.why
            status = plain(app.query_one("#status"), 160)
            assert "PAUSED at breakpoint 1" in status
            assert 'grad_norm("0.weight") > 0 and step == 4 holds (' in status and f"{g:.4g}" in status
            await pilot.press("space")                          # running again: the reason goes
            backend.pump(2)
            app.poll()
            await settle(pilot, lambda: backend.state.snapshot.step > 4)
            assert "holds" not in plain(app.query_one("#status"), 160)
    run(body())


def test_d_and_delete_remove_the_selected_breakpoint():
    backend = local()

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = await open_dialog(app, pilot)
            for text in ("loss > 2", "step 3", "every 10"):
                await add(app, pilot, text)
            assert len(rows(screen)) == 3
            await pilot.press("d")                              # typed into the input, not a removal
            assert screen.query_one("#bp-input").value == "d" and len(rows(screen)) == 3
            screen.query_one("#bp-input").value = ""
            await pilot.press("tab")
            table = screen.query_one("#bp-table")
            assert table.has_focus
            await pilot.press("down")
            assert table.cursor_row == 1
            await pilot.press("d")
            app.poll()
            await pilot.pause()
            assert rows(screen) == [("1", "when loss > 2"), ("3", "every 10 steps")]
            assert [b.id for b in backend.session.breakpoints] == [1, 3]
            await pilot.press("delete")
            app.poll()
            await pilot.pause()
            assert rows(screen) == [("1", "when loss > 2")]
            await pilot.press("delete")
            app.poll()
            await pilot.pause()
            assert rows(screen) == [] and len(backend.session.breakpoints) == 0
            assert screen.query_one("#bp-empty").display
            assert screen.query_one("#bp-input").has_focus         # focus goes back to the input
    run(body())


def test_with_a_training_process_the_answer_arrives_later():
    backend = ProcessBackend(str(SAMPLES / "xor_mlp.py"), run=False)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(pilot, lambda: backend.state.state == "paused", 20)
            screen = await open_dialog(app, pilot)
            await pilot.press(*"loss >", "enter")
            await settle(pilot, lambda: screen.error is not None, 20)
            assert "does not parse" in plain(screen.query_one("#bp-error"))
            assert screen.query_one("#bp-input").value == "loss >"
            await pilot.press("backspace", "backspace", "backspace", "backspace", "backspace", "backspace")
            await pilot.press(*"step 2", "enter")
            await settle(pilot, lambda: rows(screen) == [("1", "at step 2")], 20)
            assert screen.error is None and screen.query_one("#bp-input").value == ""
            await pilot.press("escape", "space")
            await settle(pilot, lambda: backend.state.state == "paused" and backend.state.snapshot.step == 2, 20)
            await pilot.press("q")
    run(body())
    assert backend.process.wait(5) == 0


def test_snapshot_breakpoints_dialog(snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await pilot.press("b")
        app.screen.query_one("#bp-input").cursor_blink = False   # a blinking cursor is not deterministic
        for text in ("loss > 2", "step 3", "loss >"):
            app.screen.query_one("#bp-input").value = ""
            await pilot.press(*text)
            await pilot.press("enter")
            app.poll()
            await pilot.pause()

    app = make_app(local(steps=2))
    assert snap_compare(app, terminal_size=(100, 32), run_before=run_before)
