"""The boundary between the interface and the training process: the protocol has pipes of its
own, every line on them is validated, and nothing the model prints can pass for a message."""
import io
import json
import os
import textwrap
import time

import pytest

from calcml.debug import wire
from calcml.tui.backend import ProcessBackend
from calcml.tui.widgets.status import status_text
from tui_helpers import SAMPLES, local


def wait(condition, seconds=30.0):
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def logs(backend, stream=None):
    with backend.state.lock:
        return [text for s, text in backend.state.logs if stream is None or s == stream]


@pytest.fixture
def started():
    made = []

    def start(path, **kwargs):
        backend = ProcessBackend(str(path), **kwargs)
        backend.start()
        made.append(backend)
        return backend
    yield start
    for backend in made:
        backend.close()


def test_what_one_print_writes_is_one_line_of_output(tmp_path, started):
    model = tmp_path / "prints.py"
    model.write_text(textwrap.dedent("""\
        import sys, time
        import numpy as np
        import calcml as cm
        print("a", "b", 1)
        print("x", end="")
        print("y", end="")
        print("z")
        sys.stderr.write("to stderr, ")
        sys.stderr.write("in two writes\\n")
        model = cm.nn.Linear(2, 1)
        data = (np.zeros((4, 2)), np.zeros((4, 1)))
        def loss(p, y):
            return ((p - y) ** 2).mean()
        steps = 2
        """))
    backend = started(model)
    assert wait(lambda: backend.state.state == "finished")
    assert wait(lambda: len(logs(backend)) >= 3)
    assert logs(backend, "stdout") == ["a b 1\n", "xyz\n"]
    assert logs(backend, "stderr") == ["to stderr, in two writes\n"]


def test_a_partial_line_shows_after_a_moment(tmp_path, started):
    model = tmp_path / "partial.py"
    model.write_text("import sys, time\nsys.stdout.write('loading data... ')\nsys.stdout.flush()\ntime.sleep(3600)\n")
    backend = started(model)
    assert wait(lambda: logs(backend, "stdout") == ["loading data... "], 10)


FORGED = '{"type":"state","state":"finished","stop":null}'


def test_frames_the_model_writes_are_only_its_output(tmp_path, started):
    model = tmp_path / "forger.py"
    model.write_text(textwrap.dedent(f"""\
        import os, sys
        import numpy as np
        import calcml as cm
        forged = {FORGED!r} + "\\n"
        model = cm.nn.Linear(2, 1)
        data = (np.zeros((4, 2)), np.zeros((4, 1)))
        def loss(p, y):
            print(forged, end="")
            sys.__stdout__.write(forged)
            sys.__stdout__.flush()
            os.write(1, forged.encode())
            os.write(2, forged.encode())
            return ((p - y) ** 2).mean()
        """))
    backend = started(model)
    assert wait(lambda: backend.state.snapshot is not None and backend.state.snapshot.step >= 3)
    assert backend.state.state == "running"           # no forged 'finished' took effect
    assert FORGED + "\n" in logs(backend, "stdout") and FORGED + "\n" in logs(backend, "stderr")


def test_malformed_commands_are_refused_and_the_worker_goes_on(tmp_path, started):
    backend = started(SAMPLES / "deep_sigmoid.py", run=False)
    assert wait(lambda: backend.state.model is not None)
    bad = [b"not json\n", b"[" * 100_000 + b"\n", b'{"cmd":"step","n":-1}\n', b'{"cmd":"lr","value":"fast"}\n',
           b'{"cmd":"nope"}\n', b"\xff\xfe\n", b"x" * (wire.MAX_COMMAND_BYTES * 3) + b"\n",
           b'{"cmd":"step","n":' + b"9" * 400 + b"}\n"]
    for line in bad:
        backend._commands.write(line)
    backend.step(2)
    assert wait(lambda: backend.state.snapshot is not None and backend.state.snapshot.step == 2)
    refusals = [text for text in logs(backend, "calcml") if "ignored" in text]
    assert len(refusals) == len(bad), refusals
    assert backend.running


def test_a_bad_frame_is_reported_and_never_ends_the_reader(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(wire, "MAX_FRAME_BYTES", 100_000)
    good = local("xor_mlp.py")
    hello = json.dumps({"type": "hello", "model": good.state.model})
    snapshot = wire.encode({"type": "snapshot", "snapshot": good.session.initial_snapshot()}).decode()
    missing = json.loads(snapshot)
    del missing["snapshot"]["layers"]
    lines = [hello, json.dumps(missing), '{"type":"hello","model":5}', "[" * 50_000, "x" * 300_000,
             '{"type":"state","state":"paused","stop":{"step":"one"}}', "\x00\x01garbage", snapshot,
             '{"type":"state","state":"paused","stop":null}', '{"type":"bye"}']
    backend = ProcessBackend(str(SAMPLES / "xor_mlp.py"))

    class Ended:
        def wait(self, timeout=None):
            return 0
    backend.process = Ended()
    backend._read_messages(io.BytesIO(("\n".join(lines) + "\n").encode()))
    state = backend.state
    assert state.bad_frames == 6
    assert state.model == good.state.model and state.snapshot is not None and state.state == "paused"
    crash = [p for p in tmp_path.iterdir() if p.name.startswith("calcml-crash-")]
    assert len(crash) == 1 and (crash[0].stat().st_mode & 0o777) == 0o600
    assert "missing field" in crash[0].read_text()
    assert any("ignored a malformed message" in text for text in logs(backend, "calcml"))
    assert "6 malformed messages ignored" in status_text(state).plain


def test_a_restart_in_the_training_process_runs_the_model_file_again_from_step_0(tmp_path, started):
    """The worker loads the file again (its prints show again), with the run's seed, and the
    report written at the end is the new run's."""
    report = tmp_path / "report.json"
    backend = started(SAMPLES / "xor_mlp.py", steps=40, seed=3, json_path=str(report))
    assert wait(lambda: backend.state.state == "finished")
    first = list(backend.state.history["loss"])
    assert backend.state.model["restartable"] is True
    backend.set_lr(0.25)
    backend.restart()
    assert wait(lambda: backend.state.versions["run"] == 1 and backend.state.snapshot is not None
                and backend.state.snapshot.step == 0 and backend.state.state == "paused")
    assert backend.state.snapshot.lr == 0.25 and backend.state.model["seed"] == 3
    assert any("restarted from step 0 (seed 3), keeping 0 breakpoints, lr 0.25" in text for text in logs(backend))
    backend.run()
    assert wait(lambda: backend.state.state == "finished" and len(backend.state.history.get("loss", ())) == 40)
    second = list(backend.state.history["loss"])
    assert second[0] == first[0] and second[1:] != first[1:]   # the same start; a different lr after it
    backend.close()
    saved = json.loads(report.read_text())
    assert saved["lr"] == 0.25 and saved["steps"] == 40
