"""A second backend plugs into the session without touching it: a test double that feeds known
gradients (no autograd engine at all), driven by the session or observed from a loop of its own.

The numbers the session reports are checked against the gradients the double was given, and the
warnings against the thresholds: a vanishing chain-rule product must warn, a healthy one must not.
"""
import queue
import threading

import numpy as np
import pytest

from calcml.debug import ModelSpec, Session, SessionConfig
from calcml.debug.backend import Backend, Capture, LayerInfo, ModelError, ParamInfo, StepRecord

RNG = np.random.default_rng(0)


class FakeBackend(Backend):
    """Two weighted layers 'a' and 'b' with a sigmoid between; every step reports the same given
    gradients: ∂L/∂out of 'a' scaled by `a_scale` against that of 'b' (so the chain-rule product
    down to 'a' is ‖g_a‖/‖g_b‖), and plain SGD on the weights."""

    optimizer_name = "FakeSGD"

    def __init__(self, a_scale: float, lr: float = 0.1):
        self._lr = lr
        self.w = {"a.weight": RNG.standard_normal((4, 3)), "b.weight": RNG.standard_normal((1, 4))}
        self.g = {"a.weight": RNG.standard_normal((4, 3)), "b.weight": RNG.standard_normal((1, 4))}
        self.out_grad = {"a": a_scale * RNG.standard_normal((8, 4)), "b": RNG.standard_normal((8, 1))}
        self.act_out = 1 / (1 + np.exp(-RNG.standard_normal((8, 4))))
        self.updates = 0

    def parameters(self):
        return [ParamInfo(name, w.shape, name.split(".")[0], "weight", w.size) for name, w in self.w.items()]

    def layers(self):
        return [LayerInfo("a", "Linear", None, True), LayerInfo("act", "Sigmoid", "sigmoid", False),
                LayerInfo("b", "Linear", None, True)]

    def record(self, batch=None) -> StepRecord:
        x = RNG.standard_normal((8, 3))
        captures = {"a": Capture(x, RNG.standard_normal((8, 4)), None, self.out_grad["a"]),
                    "act": Capture(None, self.act_out, None, self.out_grad["a"]),
                    "b": Capture(self.act_out, RNG.standard_normal((8, 1)), self.out_grad["a"], self.out_grad["b"])}
        return StepRecord(loss=0.5, data_grads=dict(self.g), captures=captures, batch=batch)

    def step(self, batch, traced=False):
        return self.record(batch)

    def add_penalty(self, regularizer):
        return {}, 0.0

    def grads(self):
        return dict(self.g)

    def weights(self):
        return self.w

    def apply_update(self, record, regularizer):
        for name in self.w:
            self.w[name] -= self._lr * self.g[name]   # in place, as optimisers do
        self.updates += 1

    @property
    def lr(self):
        return self._lr

    def set_lr(self, lr):
        self._lr = lr

    def curvature(self, *args, **kwargs):
        raise ModelError("curvature", NotImplementedError("no Hessian-vector products here"))

    def validation_loss(self, val_data):
        return 0.25

    def locate_non_finite(self, record):
        return None, None, None


def spec(steps=None) -> ModelSpec:
    X, y = np.zeros((8, 3)), np.zeros((8, 1))
    return ModelSpec(path="<double>", name="double", description="", model=None, loss=None, data=(X, y),
                     optimizer=None, regularizer=None, batch_size=None, val_data=None, seed=0, steps=steps)


def starts(session, kind):
    return [e for e in session.warnings if e.kind == kind and e.event == "start"]


def test_a_vanishing_product_warns_with_the_given_numbers():
    backend = FakeBackend(a_scale=1e-6)
    s = Session(spec(steps=3), SessionConfig(curvature_every=0), backend=backend)
    snap = s.run_to_end()
    assert s.state == "finished" and backend.updates == 3
    a, act, b = snap.layers
    ratio = np.linalg.norm(backend.out_grad["a"]) / np.linalg.norm(backend.out_grad["b"])
    assert a.grad_out_norm == pytest.approx(np.linalg.norm(backend.out_grad["a"]), rel=1e-12)
    assert a.params["weight"].grad_norm == pytest.approx(np.linalg.norm(backend.g["a.weight"]), rel=1e-12)
    assert b.grad_in_norm == pytest.approx(np.linalg.norm(backend.out_grad["a"]), rel=1e-12)
    mean_d = np.mean(backend.act_out * (1 - backend.act_out))
    assert act.mean_local_derivative == pytest.approx(mean_d, rel=1e-12)
    [event] = starts(s, "vanishing_gradient")
    assert event.layer == "a" and event.value == pytest.approx(ratio, rel=1e-12) and event.step == 1
    w = a.params["weight"]
    assert w.weight_norm == pytest.approx(np.linalg.norm(backend.w["a.weight"]), rel=1e-12)
    assert w.update_norm == pytest.approx(backend.lr * np.linalg.norm(backend.g["a.weight"]), rel=1e-9)


def test_a_healthy_product_does_not_warn():
    s = Session(spec(steps=3), SessionConfig(curvature_every=0), backend=FakeBackend(a_scale=1.0))
    s.run_to_end()
    assert s.state == "finished" and not starts(s, "vanishing_gradient") and not list(s.warnings)


def test_a_failing_backend_measurement_turns_it_off_with_a_note():
    s = Session(spec(steps=2), SessionConfig(curvature_every=1), backend=FakeBackend(a_scale=1.0))
    s.run_to_end()
    assert s.state == "finished" and s.curvature_every == 0
    assert "no Hessian-vector products here" in s.curvature_note


def test_observed_steps_pause_the_loop_at_its_boundary():
    """The user's loop trains; the session sees the same records, and a pause holds the loop
    before its next update until a step command lets one through."""
    backend = FakeBackend(a_scale=1e-6)
    s = Session(spec(), SessionConfig(curvature_every=0), backend=backend)
    published: queue.Queue = queue.Queue()

    def users_loop():
        while True:
            record = backend.record()
            if not s.observe_step(record):
                break
            backend.apply_update(record, None)
            published.put(s.observed_update_done())

    loop = threading.Thread(target=users_loop, daemon=True)
    loop.start()                 # the session starts paused: the loop waits at its first step
    s.step(1)
    first = published.get(timeout=10)
    s.step(2)
    later = [published.get(timeout=10), published.get(timeout=10)]
    s.stop()
    loop.join(10)
    assert not loop.is_alive()
    assert [first.step] + [x.step for x in later] == [1, 2, 3]
    assert backend.updates == 3 and s.step_count == 3 and published.empty()
    assert [e.layer for e in starts(s, "vanishing_gradient")] == ["a"]
    assert list(s.history.series("step")) == [1, 2, 3]


def test_a_pause_in_an_observed_loop_measures_the_last_step_at_rest():
    """Under a front end a pause can come after any step: the loop, held at its next boundary,
    has the last step's ‖θ‖ and ‖Δθ‖ measured there (they are otherwise measured every 1,000)."""
    import time
    backend = FakeBackend(a_scale=1.0)
    s = Session(spec(), SessionConfig(curvature_every=0, detail_every=1000), backend=backend)
    s.may_pause = True
    after: list = []

    def users_loop():
        while True:
            record = backend.record()
            if not s.observe_step(record):
                break
            backend.apply_update(record, None)
            after.append({k: w.copy() for k, w in backend.w.items()})
            s.observed_update_done()
            if len(after) == 5:
                s.pause()

    loop = threading.Thread(target=users_loop, daemon=True)
    loop.start()
    s.run()
    deadline = time.monotonic() + 10   # (the held loop replaces the snapshot before it waits)
    while time.monotonic() < deadline and not _measured_at_rest(s, after):
        time.sleep(0.01)
    assert len(after) == 5 and s.state == "paused" and s.snapshot.step == 5
    for layer in s.snapshot.layers:
        for p in layer.params.values():
            w, dw = after[4][p.name], after[4][p.name] - after[3][p.name]
            assert np.isclose(p.weight_norm, np.linalg.norm(w), rtol=1e-12)
            assert np.isclose(p.update_norm, np.linalg.norm(dw), rtol=1e-12)
    s.stop()
    loop.join(10)
    assert not loop.is_alive() and backend.updates == 5


def _measured_at_rest(s, after) -> bool:
    snapshot = s.snapshot
    if len(after) < 5 or snapshot is None or snapshot.step != 5:
        return False
    return bool(np.isclose(snapshot.layers[0].params["weight"].weight_norm, np.linalg.norm(after[4]["a.weight"]),
                           rtol=1e-12))
