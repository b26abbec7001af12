"""A recording browsed with the interface's own screens (calcml.tui.replay): at each recorded
step the warnings, history, data view and stop are what the run showed then; n, p and space move;
nothing that would change the run is done."""
from __future__ import annotations

import random

from rich.text import Text
from textual.widgets import RichLog

from calcml.debug import wire
from calcml.debug.recording import Recorder
from calcml.tui.app import DebuggerApp
from calcml.tui.format import num
from calcml.tui.replay import REFUSED, RecordingBackend, run_replay
from calcml.tui.screens.inspector import InspectorScreen
from recordings import record
from test_recording import Clock, fake_frames
from tui_helpers import plain, run, screen_text, settle


def recorded(tmp_path, name="xor_mlp.py", steps=60, **kw) -> str:
    path = tmp_path / f"{name}.calcml"
    record(path, name, steps=steps, **kw)
    return str(path)


def test_it_opens_at_the_last_snapshot_with_how_the_run_ended(tmp_path):
    backend = RecordingBackend(recorded(tmp_path, "nan_demo.py", steps=20))
    state = backend.state
    assert state.snapshot.step == 2 and state.state == "stopped" and state.stop["reason"] == "non_finite"
    assert backend.position_text() == "recorded step 2 (3 of 3)" and state.replay_position == "replay 3/3"
    assert state.model["name"] == "nan_demo" and state.model["restartable"] is False
    assert [w.step for w in state.warnings] == [1, 2]
    backend.back()
    assert state.snapshot.step == 1 and state.state == "paused" and state.stop is None
    assert [w.step for w in state.warnings] == [1]
    backend.step(1)
    assert state.snapshot.step == 2 and state.state == "stopped"


def test_the_warnings_at_a_position_are_those_recorded_up_to_its_step(tmp_path):
    path = tmp_path / "warned.calcml"
    recorder = Recorder(str(path), clock=Clock())
    sent = list(fake_frames(3000))
    for message, data in sent:
        recorder.write(message, data)
    recorder.close()
    backend = RecordingBackend(str(path))
    state, count = backend.state, len(backend.recording.snapshots)
    every = [w for message, _ in sent for w in message["snapshot"].warnings]
    rng = random.Random(7)
    shown = state.warnings_total
    for index in [0, count - 1, 1, *rng.sample(range(count), 40), count - 1]:
        before = state.versions["warnings"], state.versions["run"]
        backend.seek(index)
        step = state.snapshot.step
        assert step == backend.recording.snapshots[index].step
        expected = [w for w in every if w.step <= step]
        assert list(state.warnings) == expected[-state.warnings.maxlen:]
        # what the pane has not shown yet (it only appends; going back starts it again)
        new, shown = state.since("warnings", shown)
        if state.versions["run"] != before[1]:
            assert new == list(state.warnings)


def test_the_history_is_cut_at_the_position(tmp_path):
    backend = RecordingBackend(recorded(tmp_path, "xor_mlp.py", steps=60))
    state = backend.state
    full = dict(state.history)
    assert full["step"][-1] == 60
    for index in (0, 1, 10, 33, 59):
        backend.seek(index)
        step = state.snapshot.step
        assert state.history["step"].tolist() == [s for s in full["step"].tolist() if s <= step]
        assert state.history["loss"].tolist() == full["loss"][:len(state.history["step"])].tolist()
    backend.seek(30)
    assert state.data_view is not None and state.data_view.step <= 30


def test_commands_that_would_change_the_run_are_refused(tmp_path):
    backend = RecordingBackend(recorded(tmp_path, "xor_mlp.py", steps=5))
    backend.seek(2)
    for ask in (lambda: backend.set_lr(0.1), lambda: backend.add_breakpoint("step 3"), backend.restart,
                backend.step_into, lambda: backend.train_on(10), backend.stop):
        backend.state.refused = None
        ask()
        assert backend.state.refused == REFUSED
    assert sum(text == REFUSED + "\n" for _, text in backend.state.logs) == 6
    assert backend.state.snapshot.step == 2
    backend.request_quit()
    backend.close()


def test_a_cut_recording_says_where_it_ends(tmp_path):
    path = recorded(tmp_path, "xor_mlp.py", steps=30)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) * 2 // 3])
    backend = RecordingBackend(path)
    last = backend.recording.snapshots[-1].step
    assert 0 < last < 30 and backend.state.snapshot.step == last
    assert any(f"the recording ends at step {last}: it was cut off there" in text for _, text in backend.state.logs)


def test_run_replay_refuses_a_file_that_is_not_a_recording(tmp_path, capsys):
    bad = tmp_path / "model.py"
    bad.write_text("print('hi')\n")
    assert run_replay(str(bad)) == 2
    assert capsys.readouterr().err.strip() == (f"calcml-debug: {bad} is not a calcml recording (its first line "
                                               f"is not a recording header)")
    assert run_replay(str(tmp_path / "none.calcml")) == 2
    assert "no such file" in capsys.readouterr().err


# -- the screens ----------------------------------------------------------------------------------

def warning_lines(app) -> int:
    return len(app.query_one("#warnings", RichLog).lines)


def test_p_goes_back_n_forward_and_the_warnings_follow(tmp_path):
    backend = RecordingBackend(recorded(tmp_path, "nan_demo.py", steps=20))

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, lambda: "replay 3/3" in screen_text(app))
            assert "p back" in screen_text(app)
            at_end = warning_lines(app)
            assert at_end >= 2
            await pilot.press("p")
            await settle(pilot, lambda: "replay 2/3" in screen_text(app))
            assert backend.state.snapshot.step == 1 and backend.state.state == "paused"
            await settle(pilot, lambda: 0 < warning_lines(app) < at_end, what="fewer warnings shown")
            await pilot.press("p")
            await settle(pilot, lambda: backend.state.snapshot.step == 0)
            await settle(pilot, lambda: warning_lines(app) == 0, what="no warnings at step 0")
            await pilot.press("n")
            await pilot.press("n")
            await settle(pilot, lambda: backend.state.snapshot.step == 2 and backend.state.state == "stopped")
            await settle(pilot, lambda: warning_lines(app) == at_end)
            assert "STOPPED" in screen_text(app)
    run(body())


def test_space_plays_to_the_end(tmp_path):
    backend = RecordingBackend(recorded(tmp_path, "xor_mlp.py", steps=60))

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            backend.seek(10)
            await settle(pilot, lambda: "replay 11/61" in screen_text(app))
            await pilot.press("space")
            await settle(pilot, lambda: backend.playing and backend.state.state == "running")
            for _ in range(200):   # the app polls too; a bounded number of polls, whatever the clock
                if backend.at_end:
                    break
                backend.poll()
                await pilot.pause()
            assert backend.at_end and not backend.playing
            await settle(pilot, lambda: "FINISHED" in screen_text(app) and "replay 61/61" in screen_text(app))
            assert backend.state.snapshot.step == 60
            backend.seek(20)
            await pilot.press("space")
            await settle(pilot, lambda: backend.playing)
            await pilot.press("space")     # pauses
            await settle(pilot, lambda: not backend.playing and backend.state.state == "paused")
    run(body())


def test_lr_keys_are_refused_and_enter_inspects_the_recorded_step(tmp_path):
    backend = RecordingBackend(recorded(tmp_path, "xor_mlp.py", steps=60))

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            backend.seek(20)
            await settle(pilot, lambda: "replay 21/61" in screen_text(app))
            lr = backend.state.snapshot.lr
            await pilot.press("left_square_bracket")
            await settle(pilot, lambda: backend.state.refused == REFUSED)
            assert backend.state.snapshot.lr == lr
            await pilot.press("enter")
            await settle(pilot, lambda: isinstance(app.screen, InspectorScreen))
            screen = app.screen
            title = plain(screen.query_one("#insp-title"))
            assert "step 20" in title
            layer = screen._layer(backend.state)
            assert layer is backend.state.snapshot.layers[0] or layer.name == backend.state.snapshot.layers[0].name
            weight = next(iter(layer.params.values()))
            assert num(weight.grad_norm) in plain(screen.query_one("#grads"))
            await pilot.press("p")          # back, from the inspector: it follows
            await settle(pilot, lambda: "step 19" in plain(screen.query_one("#insp-title")))
    run(body())


def test_a_replay_shows_no_training_keys_it_cannot_do(tmp_path):
    backend = RecordingBackend(recorded(tmp_path, "xor_mlp.py", steps=10))

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await settle(pilot, lambda: "replay 11/11" in screen_text(app))
            assert app.check_action("train_on", ()) is False and app.check_action("back", ()) is True
            assert not app.check_action("restart", ())
    run(body())


def test_snapshot_replay_main_screen_160x48(snap_compare, tmp_path):
    """Positioned before the app starts: the plots redraw at most twice a second, so a key
    pressed just after the first drawing would make the picture depend on timing."""
    backend = RecordingBackend(recorded(tmp_path, "deep_sigmoid.py", steps=12))
    backend.back(1)
    assert snap_compare(DebuggerApp(backend), terminal_size=(160, 48))


def test_snapshot_replay_main_screen_80x24(snap_compare, tmp_path):
    path = recorded(tmp_path, "deep_sigmoid.py", steps=12)
    assert snap_compare(DebuggerApp(RecordingBackend(path)), terminal_size=(80, 24))


def test_a_header_alone_opens_an_empty_replay(tmp_path):
    path = tmp_path / "empty.calcml"
    Recorder(str(path)).close()
    backend = RecordingBackend(str(path))
    assert backend.state.snapshot is None and backend.position_text() == "the recording has no steps"
    backend.step(1)
    backend.back(1)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert isinstance(app.query_one("#status").content, Text)
    run(body())


def test_the_history_frames_decode(tmp_path):
    """(A recording's lines are the wire's frames: any viewer can read them.)"""
    path = recorded(tmp_path, "xor_mlp.py", steps=3)
    lines = open(path, "rb").read().splitlines()
    assert [type(wire.decode_message(line)).__struct_config__.tag for line in lines][:3] == [
        "recording", "hello", "snapshot"]
