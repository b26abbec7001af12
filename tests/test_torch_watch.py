"""calcml.watch: a PyTorch script's own loop, observed at its optimiser steps. The numbers are
those of the same training driven by the session; a pause holds the loop at its next step; a
non-finite step is not applied; once detached, nothing of calcml is left in torch."""
from __future__ import annotations

import queue
import time
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import calcml                                             # noqa: E402
import calcml as cm                                       # noqa: E402
from calcml.debug import Session, SessionConfig           # noqa: E402
from calcml.debug.codec import plain                      # noqa: E402
from helpers import make_spec                             # noqa: E402

CONFIG = dict(detail_every=1, curvature_every=0, histogram_every=4)


def mlp(seed=0, depth=3):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(3, 8, dtype=torch.float64), torch.nn.Tanh()]
    for _ in range(depth - 1):
        layers += [torch.nn.Linear(8, 8, dtype=torch.float64), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(8, 1, dtype=torch.float64))


def batch(seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(16, 3))
    return torch.from_numpy(X), torch.from_numpy(np.sin(X[:, :1]))


def users_loop(model, optimizer, steps, X, y):
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        loss.backward()
        optimizer.step()


def test_a_watched_loop_gives_the_numbers_of_the_same_training_driven():
    X, y = batch()
    driven_model, watched_model = mlp(), mlp()
    driven = Session(make_spec(driven_model, torch.nn.functional.mse_loss, (X.numpy(), y.numpy()),
                               optimizer=torch.optim.SGD(driven_model.parameters(), lr=0.05, momentum=0.9),
                               steps=8), SessionConfig(**CONFIG))
    driven.run()
    expected = [driven.tick() for _ in range(8)]
    seen = []
    optimizer = torch.optim.SGD(watched_model.parameters(), lr=0.05, momentum=0.9)
    w = calcml.watch(watched_model, optimizer, steps=8, config=SessionConfig(**CONFIG), on_step=seen.append)
    users_loop(watched_model, optimizer, 8, X, y)
    assert len(seen) == 8 and not w.attached and w.session.state == "finished"
    for a, b in zip(expected, seen):
        ra, rb = plain(a), plain(b)
        for r in (ra, rb):
            r.pop("steps_per_sec")
            r.pop("epoch")          # a watched loop's epochs are its own: the session sees only steps
        # the data view draws the data, which a watched loop keeps to itself: it says so instead
        view = rb.pop("data_view")
        assert ra.pop("data_view") is None or a.step == 8
        assert view is None or (view["kind"] == "none" and "own loop feeds the model" in view["note"])
        assert ra == rb, f"step {a.step}"
    for p, q in zip(driven_model.parameters(), watched_model.parameters()):
        assert torch.equal(p, q)


def test_a_watched_loops_curvature_is_that_of_the_same_training_driven():
    """Measured at the loop's backward(), on the loss it was called on plus the regulariser,
    before the backward frees the graph: the same λ_max, trace, diagonal and lr edge as the
    driven session's, which re-evaluates the objective on the step's batch."""
    X, y = batch()
    config = dict(CONFIG, curvature_every=3)
    driven_model, watched_model = mlp(), mlp()
    driven = Session(make_spec(driven_model, torch.nn.functional.mse_loss, (X.numpy(), y.numpy()),
                               optimizer=torch.optim.SGD(driven_model.parameters(), lr=0.05),
                               regularizer=cm.reg.L2(1e-2), steps=7), SessionConfig(**config))
    driven.run_to_end()
    optimizer = torch.optim.SGD(watched_model.parameters(), lr=0.05)
    w = calcml.watch(watched_model, optimizer, steps=7, regularizer=cm.reg.L2(1e-2), config=SessionConfig(**config),
                     on_step=lambda s: None)
    users_loop(watched_model, optimizer, 7, X, y)
    measured = [plain(c) for c in w.session.curvature_history]
    assert [c["step"] for c in measured] == [1, 4, 7]
    expected = [plain(c) for c in driven.curvature_history]
    # The loop's first step is the one whose forward hands each layer a view of its input (to
    # find which layers' inputs also go elsewhere), so its double backward adds in another order
    # and agrees to rounding; the later steps' graphs are the loop's own and agree exactly.
    assert flat(measured[0]) == pytest.approx(flat(expected[0]), rel=1e-13, abs=1e-15)
    assert measured[1:] == expected[1:]
    assert w.session.curvature_note is None


def flat(record: dict) -> dict:
    """A record's numbers by their path ('hessian_diag.0.weight'), its words and counts apart."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in flat(value).items()})
        else:
            out[key] = value
    return out


def wait_until(condition, timeout=10.0):
    """Wait for something another thread does (never a fixed sleep standing in for it)."""
    done = threading.Event()
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        done.wait(0.01)


def test_a_pause_holds_the_loop_at_its_next_optimiser_step():
    X, y = batch()
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    published: queue.Queue = queue.Queue()
    w = calcml.watch(model, optimizer, start_paused=True, config=SessionConfig(**CONFIG), on_step=published.put)
    steps_taken = []

    def loop():
        for i in range(5):
            users_loop(model, optimizer, 1, X, y)
            steps_taken.append(i)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    thread.join(0.3)
    assert steps_taken == [] and thread.is_alive()      # held at its first optimizer.step()
    w.session.step(2)
    assert [published.get(timeout=10).step for _ in range(2)] == [1, 2]
    wait_until(lambda: len(steps_taken) == 2)            # the loop returns from its second step...
    thread.join(0.3)
    assert steps_taken == [0, 1] and thread.is_alive()  # ...and is held again at its third
    assert published.empty() and w.session.step_count == 2
    w.session.run()
    thread.join(10)
    assert steps_taken == [0, 1, 2, 3, 4] and w.session.step_count == 5
    w.detach()


def test_a_non_finite_step_is_not_applied_and_the_layer_is_named():
    X, y = batch()
    X[5, 0] = float("inf")
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = [p.detach().clone() for p in model.parameters()]
    w = calcml.watch(model, optimizer, config=SessionConfig(**CONFIG), on_step=lambda s: None)
    users_loop(model, optimizer, 1, X, y)
    assert w.session.stop_info.reason == "non_finite" and not w.attached
    assert "layer 0" in w.session.stop_info.detail
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_once_detached_nothing_of_calcml_is_left_in_torch():
    backward = torch.Tensor.backward
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    w = calcml.watch(model, optimizer, on_step=lambda s: None)
    assert torch.Tensor.backward is not backward
    w.detach()
    assert torch.Tensor.backward is backward
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks
    X, y = batch()
    users_loop(model, optimizer, 2, X, y)          # trains as plain torch, unobserved
    assert w.session.step_count == 0


def amp_loop(model, optimizer, steps, X, y, scaler=None, overflow_at=None):
    for i in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), y)
        if i == overflow_at:
            loss = loss * float("inf")
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()


def test_with_amp_the_numbers_are_the_unscaled_ones():
    """GradScaler multiplies the loss, and so every gradient of the backward pass, by 2^16: the
    session shows the loss and the layers' gradients divided back (a power of two: exactly)."""
    X, y = batch()
    plain_model, amp_model = mlp(), mlp()
    seen_plain, seen_amp = [], []
    for model, seen, scaler in ((plain_model, seen_plain, None),
                                (amp_model, seen_amp, torch.amp.GradScaler("cpu", init_scale=2.0 ** 16))):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        w = calcml.watch(model, optimizer, config=SessionConfig(**CONFIG), on_step=seen.append)
        amp_loop(model, optimizer, 6, X, y, scaler)
        w.detach()
    assert len(seen_amp) == 6
    for a, b in zip(seen_plain, seen_amp):
        ra, rb = plain(a), plain(b)
        for r in (ra, rb):
            r.pop("steps_per_sec")
        assert ra == rb, f"step {a.step}"
    assert seen_amp[-1].layers[2].grad_out_norm > 0


def test_a_step_gradscaler_skips_is_said_and_not_counted():
    X, y = batch()
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    notes = []
    w = calcml.watch(model, optimizer, config=SessionConfig(**CONFIG), on_step=lambda s: None)
    w.on_skip = notes.append
    amp_loop(model, optimizer, 5, X, y, torch.amp.GradScaler("cpu", init_scale=1024.0), overflow_at=2)
    w.detach()
    assert w.skipped_steps == 1 and w.session.step_count == 4
    assert len(notes) == 1 and "skipped by torch.amp.GradScaler" in notes[0] and "scaled by 1024" in notes[0]
    assert w.session.stop_info is None          # an overflow AMP handles is not the run's NaN
    assert torch.amp.GradScaler.scale.__module__ == "torch.amp.grad_scaler"   # unwrapped once detached


class LogOf(torch.nn.Module):
    """A Linear, then a log of its output (NaN where it is negative), then dropout and a
    BatchNorm (so that running it again must put back the RNG and the running statistics)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4, dtype=torch.float64)
        self.drop = torch.nn.Dropout(0.5)
        self.norm = torch.nn.BatchNorm1d(4, dtype=torch.float64)
        self.head = torch.nn.Linear(4, 1, dtype=torch.float64)

    def forward(self, x):
        return self.head(self.norm(self.drop(torch.log(self.lin(x)))))


def test_a_watched_non_finite_step_is_located_by_op_from_its_forward_pass_run_again():
    """The loop's forward pass is run again recorded, from the inputs and the RNG state it had:
    the first non-finite op is the log, in the model's own forward; the running statistics, the
    RNG and the weights are as the step left them (the update not applied)."""
    X, y = batch()
    torch.manual_seed(0)
    model = LogOf()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    w = calcml.watch(model, optimizer, config=SessionConfig(**CONFIG), on_step=lambda s: None)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    out = model(X)
    stats = (model.norm.running_mean.clone(), model.norm.running_var.clone(), int(model.norm.num_batches_tracked))
    torch.nn.functional.mse_loss(out, y).backward()
    rng = torch.random.get_rng_state()
    optimizer.step()
    stop = w.session.stop_info
    assert stop.reason == "non_finite" and not w.attached
    assert "forward op #" in stop.detail and "'log'" in stop.detail, stop.detail
    trace = w.session.snapshot.trace
    assert trace is not None and [(op.op, op.scope) for op in trace.ops][:2] == [("linear", "lin"), ("log", "")]
    assert torch.equal(torch.random.get_rng_state(), rng)
    same = dict(rtol=0, atol=0, equal_nan=True)   # (the log's NaN reached the running statistics)
    assert torch.allclose(model.norm.running_mean, stats[0], **same)
    assert torch.allclose(model.norm.running_var, stats[1], **same)
    assert int(model.norm.num_batches_tracked) == stats[2]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_watched_step_whose_loss_sends_back_a_non_finite_gradient_names_the_loss():
    X, y = batch()
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    w = calcml.watch(model, optimizer, config=SessionConfig(**CONFIG), on_step=lambda s: None)
    optimizer.zero_grad()
    pred = model(X)
    (pred - y).abs().pow(0.5).mean().backward()      # d√|e|/de is infinite where e = 0
    optimizer.step()
    assert w.session.stop_info is None               # every e ≠ 0: finite
    optimizer.zero_grad()
    pred = model(X)
    (pred - pred.detach()).abs().pow(0.5).mean().backward()   # e = 0 everywhere: inf·0 = NaN
    optimizer.step()
    stop = w.session.stop_info
    assert stop.reason == "non_finite", stop
    assert "'loss' in the loss function produced the first non-finite gradient" in stop.detail, stop.detail
