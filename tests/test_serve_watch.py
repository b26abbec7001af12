"""`calcml.watch(model, optimizer, serve=...)`: a script's (or notebook's) own loop, served; a
viewer pauses the loop at its optimiser step and steps it, and the loop ends as it wants."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading

import pytest

from helpers import wait_for

torch = pytest.importorskip("torch")

import calcml                               # noqa: E402
from calcml.debug import SessionConfig      # noqa: E402
from calcml.tui.remote import attach        # noqa: E402


def test_a_viewer_pauses_and_steps_a_watched_loop():
    folder = tempfile.mkdtemp(prefix="cm", dir="/tmp")
    address = os.path.join(folder, "nb.sock")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    X, y = torch.randn(32, 2), torch.randn(32, 1)
    watch = calcml.watch(net, optimizer, serve=address, config=SessionConfig(curvature_every=0))
    taken = [0]
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(net(X), y).backward()
            optimizer.step()
            taken[0] += 1
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        viewer = attach(address)
        viewer.start()
        wait_for(lambda: viewer.state.snapshot is not None and viewer.state.snapshot.step > 0, what="a step")
        assert viewer.state.remote["control"] and viewer.state.model["layers"]
        viewer.pause()
        wait_for(lambda: watch.session.state == "paused", what="the pause")
        held = taken[0]
        step = watch.session.step_count
        viewer.step(2)
        wait_for(lambda: watch.session.step_count == step + 2 and viewer.state.snapshot.step == step + 2,
                 what="two steps")
        wait_for(lambda: taken[0] == held + 2, what="the loop to take exactly two steps")
        viewer.run()
        wait_for(lambda: taken[0] > held + 10, what="the loop to run on")
        viewer.close()
    finally:
        stop.set()
        watch.session.run()
        thread.join(30)
        watch.detach()
    assert not os.path.exists(address)              # removed with the watch
    shutil.rmtree(folder, ignore_errors=True)
