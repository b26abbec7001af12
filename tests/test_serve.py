"""A served run over loopback: attach, detach, attach again with the history; two viewers; the
token; hostile clients (garbage, huge lines, a flood of connections, a viewer killed mid-frame,
one that never reads) while training runs — the training never waits for any of them."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time

import pytest

from helpers import wait_for

from calcml.debug import Session, load_model_file, serve, wire
from calcml.debug.config import session_config
from calcml.debug.publish import Publisher
from calcml.tui.headless import run_served
from calcml.tui.remote import AttachError, attach, connect

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

XOR = str(ROOT / "sample_models" / "xor_mlp.py")
DEEP = str(ROOT / "sample_models" / "deep_sigmoid.py")


@pytest.fixture
def folder():
    path = tempfile.mkdtemp(prefix="cm", dir="/tmp")   # short: a socket path has ~100 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Served:
    """A model file's run, served (and trained) in a thread of this process, as --serve does."""

    def __init__(self, folder, model=XOR, steps=10**7, breaks=(), **options):
        session = Session(load_model_file(model, steps=steps), session_config(0))
        for text in breaks:
            session.add_breakpoint(text)
        self.address = serve.Address("unix", path=os.path.join(folder, "run.sock"))
        self.publisher = Publisher(session, address=self.address, **options)
        self.publisher.start()
        self.out = io.StringIO()
        self.code = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.session.step_count >= 1, what="the served run's first step")

    def _run(self):
        self.code = run_served(self.publisher, out=self.out)

    @property
    def session(self):
        return self.publisher.worker.session

    @property
    def server(self):
        return self.publisher.server

    def stop(self):
        self.session.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def served(folder):
    runs = []

    def start(**options):
        run = Served(folder, **options)
        runs.append(run)
        return run
    yield start
    for run in runs:
        if run.thread.is_alive():
            run.stop()


def raw(address: serve.Address) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(address.path)
    return sock


def test_attach_detach_and_attach_again_with_the_history_kept(served):
    run = served()
    wait_for(lambda: run.session.step_count > 50, what="training")
    viewer = attach(run.address.path)
    viewer.start()
    state = viewer.state
    assert state.remote["control"] is True            # this user can read the token file: control
    wait_for(lambda: state.snapshot is not None and len(state.history.get("step", ())) > 10, what="the history")
    assert state.model["name"] == "xor_mlp"
    first_step = state.snapshot.step
    assert state.history["step"][0] == 1               # the run from its start, not from the attach
    viewer.close()                                      # detach: the run goes on
    wait_for(lambda: run.server.viewers == 0, what="the server to see the viewer go")
    step_at_detach = run.session.step_count
    wait_for(lambda: run.session.step_count > step_at_detach + 100, what="training after the detach")
    again = attach(run.address.path)
    again.start()
    wait_for(lambda: again.state.snapshot is not None and again.state.snapshot.step > step_at_detach
             and again.state.history and again.state.history["step"][-1] > step_at_detach, what="the second attach")
    assert again.state.history["step"][0] == 1 and first_step < step_at_detach
    assert run.thread.is_alive() and run.session.state == "running"
    again.close()


def test_warnings_so_far_reach_a_viewer_that_attaches_late(served):
    run = served(model=DEEP)
    wait_for(lambda: any(w.event == "start" for w in run.session.warnings), what="a warning")
    kinds = {w.kind for w in run.session.warnings}
    viewer = attach(run.address.path)
    viewer.start()
    wait_for(lambda: viewer.state.warnings, what="the warnings")
    assert kinds <= {w.kind for w in viewer.state.warnings}
    viewer.close()


def test_two_viewers_one_in_control_one_watching(served, folder):
    run = served()
    controller = attach(run.address.path)
    watcher_backend = None
    token_file = run.server.token_file
    # the watcher cannot read the token: it gives none
    sock, stream, attached = connect(run.address, token=None)
    from calcml.tui.remote import AttachBackend
    watcher_backend = AttachBackend(run.address, sock, stream, attached)
    for b in (controller, watcher_backend):
        b.start()
    assert watcher_backend.state.remote["control"] is False
    wait_for(lambda: controller.state.snapshot and watcher_backend.state.snapshot, what="both viewers")
    watcher_backend.pause()                      # refused: it only watches
    wait_for(lambda: watcher_backend.state.refused, what="the refusal")
    assert "only watches" in watcher_backend.state.refused and token_file in watcher_backend.state.refused
    assert run.session.state == "running"
    controller.pause()
    wait_for(lambda: run.session.state == "paused", what="the pause")
    wait_for(lambda: controller.state.state == "paused" and watcher_backend.state.state == "paused",
             what="both viewers to see the pause")
    step = run.session.step_count
    controller.step(3)
    wait_for(lambda: run.session.step_count == step + 3 and watcher_backend.state.snapshot.step == step + 3,
             what="three steps, seen by the watcher")
    controller.run()
    wait_for(lambda: run.session.state == "running", what="running again")
    for b in (controller, watcher_backend):
        b.close()


def test_token_file_is_private_and_a_wrong_token_is_turned_away(served, folder):
    run = served()
    for path in (run.address.path, run.server.token_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    with pytest.raises(AttachError, match="token is not this run's"):
        connect(run.address, token="x" * 43)
    bad = os.path.join(folder, "wrong.token")
    with open(bad, "w") as f:
        f.write("not-it\n")
    with pytest.raises(AttachError, match="token is not this run's"):
        attach(run.address.path, token_file=bad)
    with pytest.raises(AttachError, match="cannot read the token file"):
        attach(run.address.path, token_file=os.path.join(folder, "missing.token"))
    assert run.session.state == "running"


def test_a_private_run_turns_away_viewers_without_the_token(served):
    run = served(private=True)
    with pytest.raises(AttachError, match="admits only viewers with its token"):
        connect(run.address, token=None)
    viewer = attach(run.address.path)          # the token from its file
    assert viewer.state.remote["control"]
    viewer.close()


def test_serving_beyond_this_machine_needs_asking_for(folder):
    session = Session(load_model_file(XOR, steps=5), session_config(0))
    with pytest.raises(serve.ServeError, match="--serve-public"):
        Publisher(session, address=serve.parse_address("0.0.0.0:7707"))
    assert serve.is_loopback(serve.parse_address("127.0.0.1:7707"))
    assert serve.is_loopback(serve.parse_address("localhost:1"))
    assert not serve.is_loopback(serve.parse_address("[::]:7707"))


def test_addresses_and_ranks():
    assert serve.parse_address("/tmp/a.sock") == serve.Address("unix", path="/tmp/a.sock")
    assert serve.parse_address("7707") == serve.Address("tcp", host="127.0.0.1", port=7707)
    assert serve.parse_address("tcp:localhost:80") == serve.Address("tcp", host="localhost", port=80)
    assert serve.parse_address("[::1]:9") == serve.Address("tcp", host="::1", port=9)
    assert str(serve.parse_address("[::1]:9")) == "[::1]:9"
    for bad in ("", "host:port", "127.0.0.1:0", "127.0.0.1:70000"):
        with pytest.raises(serve.ServeError):
            serve.parse_address(bad)
    base = serve.parse_address("/tmp/run.sock")
    assert serve.for_rank(base, 0) == base
    assert serve.for_rank(base, 3).path == "/tmp/run.rank3.sock"
    assert serve.for_rank(serve.parse_address("127.0.0.1:7000"), 2).port == 7002


def test_nothing_is_serving_there(folder):
    with pytest.raises(AttachError, match="no run is serving at"):
        attach(os.path.join(folder, "nobody.sock"))


def test_garbage_huge_lines_and_a_flood_never_stop_the_training(served, monkeypatch):
    monkeypatch.setattr(serve, "ATTACH_TIMEOUT", 60.0)   # the flood waits until it is closed
    run = served()
    wait_for(lambda: run.session.step_count > 10, what="training")
    address = run.address

    def answer(sock) -> dict:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data) if data else {}

    # garbage instead of an attach request: turned away with a reason
    sock = raw(address)
    sock.sendall(b"\x00\xff garbage {{{\n")
    reply = answer(sock)
    assert reply["type"] == "refused" and "not attached" in reply["message"]
    sock.close()
    # an attach request that never ends (no newline, more than a command may be): turned away
    sock = raw(address)
    try:
        sock.sendall(b'{"attach": "calcml/1", "token": "' + b"A" * (wire.MAX_COMMAND_BYTES + 10))
    except OSError:
        pass
    assert answer(sock).get("type") in ("refused", None)
    sock.close()
    # deeply nested JSON, and a different protocol
    for line in (b"[" * 100000 + b"\n", b'{"attach": "other/9"}\n'):
        sock = raw(address)
        sock.sendall(line)
        assert answer(sock)["type"] == "refused"
        sock.close()
    # a flood: many connections that say nothing (past the listen backlog, connecting fails:
    # the flood's problem, not the run's)
    flood = []
    for _ in range(60):
        try:
            flood.append(raw(address))
        except BlockingIOError:
            pass
    assert len(flood) > 16
    step = run.session.step_count
    wait_for(lambda: run.session.step_count > step + 50, what="training during the flood")
    with pytest.raises(AttachError, match="connections are waiting to attach"):
        connect(address, token=None)          # while the flood lasts, a viewer is told to come back
    for s in flood:
        s.close()
    wait_for(lambda: run.server.connecting == 0, what="the flood to be gone")
    # an attached viewer sending garbage commands loses its own connection, nothing more
    viewer = attach(address.path)
    viewer.start()
    viewer._sock.sendall(b"{not json\n")
    wait_for(lambda: viewer.state.stop is not None, what="the viewer's connection to close")
    good = attach(address.path)       # and the run still takes viewers
    good.start()
    wait_for(lambda: good.state.snapshot is not None, what="a good viewer")
    assert run.thread.is_alive() and run.session.state == "running"
    assert run.server.refused >= 4
    good.close()


def test_a_viewer_killed_mid_frame_and_one_that_never_reads(served, monkeypatch):
    monkeypatch.setattr(serve, "QUEUE_BYTES", 200_000)
    run = served()
    # killed mid-frame: attached, reads a few bytes of the catch-up, is gone
    sock = raw(run.address)
    sock.sendall(serve.attach_request(None))
    assert sock.recv(10)
    sock.close()
    wait_for(lambda: run.server.viewers == 0, what="the killed viewer to be let go")
    # never reads: its queue fills; the run drops what it queued and goes on
    stuck = raw(run.address)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(serve.attach_request(None))
    wait_for(lambda: run.server.viewers == 1, what="the stuck viewer to attach")
    viewer = run.server._viewers[0]
    step = run.session.step_count
    wait_for(lambda: viewer.lagged > 0, what="the stuck viewer to fall behind")
    wait_for(lambda: run.session.step_count > step + 200, what="training past a viewer that never reads")
    # a viewer that reads is served meanwhile
    good = attach(run.address.path)
    good.start()
    wait_for(lambda: good.state.snapshot is not None and good.state.snapshot.step > step, what="a reading viewer")
    good.close()
    stuck.close()


def test_a_viewer_that_attaches_while_the_run_is_paused_at_a_breakpoint_continues_it(served):
    run = served(breaks=["step=40"])
    wait_for(lambda: "paused at step 40 at breakpoint" in run.out.getvalue(), what="the breakpoint, said")
    viewer = attach(run.address.path)
    viewer.start()
    wait_for(lambda: viewer.state.state == "paused" and viewer.state.snapshot.hit is not None, what="the hit")
    assert viewer.state.snapshot.step == 40
    viewer.run()
    wait_for(lambda: run.session.step_count > 45, what="the run to continue")
    viewer.close()


def test_a_viewer_stop_ends_the_served_run_and_viewers_get_bye(served):
    run = served()
    viewer = attach(run.address.path)
    viewer.start()
    wait_for(lambda: viewer.state.snapshot is not None, what="the viewer")
    viewer.stop()
    run.thread.join(30)
    assert run.code == 0
    wait_for(lambda: viewer.state.bye, what="the bye")
    assert viewer.state.state == "stopped"
    assert not os.path.exists(run.address.path) and not os.path.exists(run.server.token_file)
    assert "stopped at step" in run.out.getvalue()


def test_a_pytorch_model_file_is_served_as_a_calcml_one_is(served):
    pytest.importorskip("torch")
    run = served(model=str(ROOT / "sample_models" / "torch_residual.py"))
    viewer = attach(run.address.path)
    viewer.start()
    wait_for(lambda: viewer.state.snapshot is not None and viewer.state.snapshot.step > 0
             and viewer.state.history, what="the torch run's steps")
    assert viewer.state.model["name"] == "torch_residual"
    names = [layer.name for layer in viewer.state.snapshot.layers]
    assert "blocks.0.fc1" in names
    viewer.pause()
    wait_for(lambda: run.session.state == "paused" and viewer.state.state == "paused", what="the pause")
    viewer.close()


def test_viewers_attaching_together_get_every_frame_after_their_catch_up_once(folder):
    """The catch-up and the queue meet exactly: a viewer is sent the run up to frame N, then
    N+1, N+2, ... with none missing and none twice, however many attach at once."""
    lock, count = threading.Lock(), [0]

    def catch_up(then=None):           # as Worker.catch_up: under the lock the frames are published under
        with lock:
            if then is not None:
                then()
            return [{"type": "log", "stream": "calcml", "text": f"upto {count[0]}"}]
    address = serve.Address("unix", path=os.path.join(folder, "frames.sock"))
    server = serve.Server(address, catch_up=catch_up, on_command=lambda command: None)
    server.start()
    stop = threading.Event()

    def publish():
        while not stop.is_set():
            with lock:
                count[0] += 1
                frame = {"type": "log", "stream": "calcml", "text": f"frame {count[0]}"}
                server.publish(frame, wire.encode(frame))
            time.sleep(0.0002)
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    results = {}

    def view(k):
        sock = raw(address)
        sock.sendall(serve.attach_request(None))
        lines = serve.read_lines(sock, wire.MAX_FRAME_BYTES)
        texts = [json.loads(next(lines)) for _ in range(302)]
        sock.close()
        results[k] = texts
    viewers = [threading.Thread(target=view, args=(k,)) for k in range(6)]
    for v in viewers:
        v.start()
    for v in viewers:
        v.join(60)
    stop.set()
    publisher.join(10)
    server.close()
    assert len(results) == 6
    for texts in results.values():
        assert texts[0]["type"] == "attached"
        upto = int(texts[1]["text"].split()[1])
        assert [t["text"] for t in texts[2:]] == [f"frame {n}" for n in range(upto + 1, upto + 301)]
