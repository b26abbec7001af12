"""A 2-process gloo run under torchrun (`calcml-debug train.py --serve-address BASE`, the script
unmodified), attached from a third process: each rank serves at its own address; rank 0 is in
control and the other follows it, so a pause or a step there holds or moves both; each rank
measures its own half of the batch before the all-reduce (its layers' ‖∂L/∂out‖ differ) and
the same all-reduced parameter gradients after it."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

import helpers
from msgspec.structs import replace

from calcml.debug import Session, serve
from calcml.debug.loader import load_model_file
from calcml.tui.app import DebuggerApp
from calcml.tui.backend import LocalBackend
from calcml.tui.ranks import base_address, spread, start_peers, state_spread
from calcml.tui.remote import attach
from calcml.tui.screens.inspector import InspectorScreen
from calcml.tui.text_inspector import ranks_section
from calcml.tui.text_status import status_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALCML_DEBUG = shutil.which("calcml-debug", path=os.path.dirname(sys.executable)) or shutil.which("calcml-debug")


def _gloo() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return dist.is_available() and dist.is_gloo_available()

SCRIPT = textwrap.dedent('''\
    """A small DistributedDataParallel regression: each rank trains on its own half of the batch."""
    import os
    import sys
    import time

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16, dtype=torch.float64), torch.nn.Tanh(),
                              torch.nn.Linear(16, 1, dtype=torch.float64))
    model = torch.nn.parallel.DistributedDataParallel(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    X = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.sin(X[:, :1])
    mine = slice(rank * 32, rank * 32 + 32)
    stop_file = sys.argv[1]
    for step in range(1_000_000):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X[mine]), y[mine])
        loss.backward()
        optimizer.step()
        stop = torch.tensor([int(os.path.exists(stop_file))])
        dist.all_reduce(stop, op=dist.ReduceOp.MAX)     # the ranks end their loops together
        if stop.item():
            break
        time.sleep(0.002)
    dist.barrier()
    dist.destroy_process_group()
    ''')


def wait_for(condition, timeout=60.0, what="the condition"):
    return helpers.wait_for(condition, timeout, what)   # (torchrun starts slowly)


def holds_for(condition, seconds: float) -> bool:
    """`condition` stays true for `seconds` (checked all along): that something does not happen."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not condition():
            return False
        time.sleep(0.02)
    return condition()


@pytest.mark.skipif(not _gloo(), reason="no torch.distributed with gloo here")
@pytest.mark.skipif(CALCML_DEBUG is None, reason="the calcml-debug command is not installed")
def test_torchrun_ranks_are_served_held_together_and_show_their_spread():
    folder = tempfile.mkdtemp(prefix="cm", dir="/tmp")      # (short: a socket path is ~100 bytes at most)
    script, stop, log = (os.path.join(folder, name) for name in ("train.py", "stop", "log.txt"))
    with open(script, "w") as f:
        f.write(SCRIPT)
    base = os.path.join(folder, "run.sock")
    rank1 = serve.for_rank(serve.parse_address(base), 1).path
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--no-python", CALCML_DEBUG, script, "--serve-address", base, "--", stop]
    viewer = other = None
    with open(log, "w") as out:
        run = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder,
                               start_new_session=True)     # (its ranks with it, if it must be ended)
    try:
        wait_for(lambda: os.path.exists(base + ".token") and os.path.exists(rank1 + ".token") or run.poll() is not None,
                 timeout=180, what="both ranks to serve")
        assert run.poll() is None, open(log).read()
        viewer = attach(base)                    # rank 0, with its token: in control
        viewer.start()
        peers = start_peers(viewer)
        assert viewer.state.remote["control"] and viewer.state.remote["rank"] == 0
        assert peers is not None and viewer.state.ranks is peers
        wait_for(lambda: peers.peers[1].remote is not None and peers.peers[1].snapshot is not None,
                 what="the peer to see rank 1")
        assert peers.peers[1].remote["rank"] == 1 and not peers.peers[1].remote["control"]

        def steps():
            return viewer.state.snapshot.step, peers.peers[1].snapshot.step
        wait_for(lambda: viewer.state.snapshot is not None and min(steps()) > 3, what="a few steps")

        # pause through rank 0: both ranks stop, at the same step (rank 1 waits for rank 0's word)
        viewer.pause()
        wait_for(lambda: viewer.state.state == "paused" and steps()[0] == steps()[1], what="both ranks held")
        held = steps()
        assert holds_for(lambda: steps() == held, 1.5), (held, steps())

        # one step through rank 0: both take exactly one
        viewer.step(1)
        wait_for(lambda: steps() == (held[0] + 1, held[0] + 1), what="both ranks to take one step")
        assert holds_for(lambda: steps() == (held[0] + 1, held[0] + 1), 1.0), steps()

        # the spread: each rank's own batch before the all-reduce, the same gradients after it
        snaps = peers.snapshots()
        assert sorted(snaps) == [0, 1] and snaps[0].step == snaps[1].step == held[0] + 1
        first = snaps[0].layers[0].name
        layer = spread(snaps).layers[first]
        assert layer.grad_out[0] != layer.grad_out[1] and layer.grad_out_ratio > 1 + 1e-6
        w0, w1 = layer.weight_grad[0], layer.weight_grad[1]
        assert w0 > 0 and abs(w0 - w1) <= 1e-12 * w0
        assert "ranks 2: loss" in status_text(viewer.state).plain
        section = ranks_section(spread(snaps, 2), first).plain
        assert "Across 2 ranks" in section and "the same on every rank" in section

        # rank 1 follows rank 0: a command sent there is refused, and nothing moves
        other = attach(base, rank=1)
        other.start()
        assert other.state.remote["rank"] == 1 and not other.state.remote["control"]
        other.run()
        wait_for(lambda: other.state.refused is not None, what="rank 1 to refuse the command")
        assert "rank 1 of 2" in other.state.refused and "rank 0" in other.state.refused
        assert holds_for(lambda: steps() == (held[0] + 1, held[0] + 1), 0.5), steps()

        # run on through rank 0, then let the script end its loop
        viewer.run()
        wait_for(lambda: min(steps()) > held[0] + 10, what="both ranks to run on")
        open(stop, "w").close()
        assert run.wait(timeout=120) == 0, open(log).read()
        wait_for(lambda: viewer.state.bye and peers.peers[1].bye, what=f"both ranks to say bye ({viewer.state.bye}, {peers.peers[1].bye}, {viewer.state.stop}, {peers.peers[1].stop})")
        text = open(log).read()
        assert text.count("serving at ") == 1, text          # rank 0 alone speaks
        assert not os.path.exists(base) and not os.path.exists(rank1)   # each rank's socket removed
    finally:
        open(stop, "w").close()
        for backend in (viewer, other):
            if backend is not None:
                backend.close()
        if run.poll() is None:
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        shutil.rmtree(folder, ignore_errors=True)


# -- the spread's text, from made-up ranks ---------------------------------------------------

def two_ranks(steps: int = 3):
    """A real session's backend, and {rank: snapshot} for two ranks: rank 1's layers' ‖∂L/∂out‖
    1.25 times rank 0's, its loss a little higher, the parameters' gradients the same."""
    backend = LocalBackend(Session(load_model_file(os.path.join(ROOT, "sample_models", "deep_sigmoid.py"), seed=0)))
    backend.step(steps)
    backend.pump(steps)
    snap = backend.state.snapshot
    layers = tuple(replace(layer, grad_out_norm=None if layer.grad_out_norm is None else layer.grad_out_norm * 1.25)
                   for layer in snap.layers)
    return backend, {0: snap, 1: replace(snap, layers=layers, loss=snap.loss * 1.1)}


def test_the_spread_puts_each_ranks_numbers_side_by_side():
    _, snaps = two_ranks()
    result = spread(snaps)
    first = snaps[0].layers[0]
    layer = result.layers[first.name]
    assert [r.rank for r in result.ranks] == [0, 1] and result.in_step
    assert layer.grad_out == {0: first.grad_out_norm, 1: first.grad_out_norm * 1.25}
    assert layer.grad_out_ratio == pytest.approx(1.25) and layer.weight_ratio == pytest.approx(1.0)
    section = ranks_section(result, first.name).plain
    assert "Across 2 ranks (each its own part of the batch, before the all-reduce)" in section
    assert "(×1.25)" in section and "‖∂L/∂W‖ after the all-reduce: the same on every rank" in section
    # the parameters' gradients differing (no all-reduce), and a rank not heard from
    w = first.params["weight"]
    other = replace(snaps[1], layers=(replace(first, params={"weight": replace(w, grad_norm=w.grad_norm * 2)}),
                                      *snaps[1].layers[1:]))
    section = ranks_section(spread({0: snaps[0], 1: other}, world=3), first.name).plain
    assert "they differ" in section and "not heard from yet: rank 2" in section


def test_the_status_line_shows_the_loss_across_ranks_and_is_unchanged_without_them():
    backend, snaps = two_ranks()
    state = backend.state
    before = status_text(state).plain
    assert "ranks" not in before
    state.ranks = snaps
    line = status_text(state).plain
    assert line.startswith(before) and f"ranks 2: loss {snaps[0].loss:.4g} … {snaps[1].loss:.4g}" in line
    state.ranks = None
    assert status_text(state).plain == before
    assert state_spread(state) is None


def test_base_address_undoes_for_rank():
    for text in ("/tmp/x/run.sock", "127.0.0.1:7000"):
        base = serve.parse_address(text)
        assert base_address(serve.for_rank(base, 3), 3) == base


def test_the_inspector_shows_the_layer_across_ranks_only_when_attached_to_several():
    backend, snaps = two_ranks()
    name = snaps[0].layers[0].name

    async def scenario(ranks):
        backend.state.ranks = ranks
        app = DebuggerApp(backend)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, InspectorScreen) and screen.layer_name == name
            shown = screen.query_one("#ranks")
            return shown.display, str(shown.content) if shown.display else ""

    display, text = asyncio.run(scenario(snaps))
    assert display and "Across 2 ranks" in text and "(×1.25)" in text
    assert asyncio.run(scenario(None)) == (False, "")
