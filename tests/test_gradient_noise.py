"""Mini-batch gradient noise (calcml.debug.batchnoise): noise/signal ν = ‖SE of the batch's mean
gradient‖ / ‖that gradient‖, checked against per-example gradients computed here, in closed form
for linear regression and by central finite differences (float64, plain numpy) for a tanh MLP;
the calcml and torch backends against each other; that measuring leaves the step's gradients,
the RNG and the buffers alone; the warning, its clearing, the note when it fails, and the
snapshot, wire, report and headless output that carry it."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml.debug import Session, SessionConfig, batchnoise
from calcml.debug.calcml_backend import CalcmlBackend
from calcml.debug.report import build_report
from fd import numeric_grad
from helpers import make_spec, snapshot_over_the_wire


def nu_from_examples(per_example: dict, population=None, groups=None) -> tuple:
    """(ν per parameter, ν overall) from per-example gradients {name: [B, ...]}, in plain numpy:
    the micro-batch means of `groups` groups of ⌊B/groups⌋ (all B: each example its own), their
    spread times the group size as the per-example variance, the finite-population factor."""
    B = len(next(iter(per_example.values())))
    m = groups or B
    b = B // m
    correction = 1 - B / population if population else 1.0
    noise2, signal2, by_param = 0.0, 0.0, {}
    for name, g in per_example.items():
        g = g.reshape(B, -1)[:m * b]
        G = g.reshape(m, b, -1).mean(axis=1)                  # each micro-batch's gradient
        var_sum = b * G.var(axis=0, ddof=1).sum()             # Σ_j s_j²
        se2 = var_sum / B * correction
        s2 = float(np.sum(G.mean(axis=0) ** 2))
        by_param[name] = math.sqrt(se2 / s2)
        noise2, signal2 = noise2 + se2, signal2 + s2
    return by_param, math.sqrt(noise2 / signal2)


def linear_data(n=40, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 + noise * rng.normal(size=(n, 1))
    return X, y


def linear_model(seed=0):
    cm.manual_seed(seed)
    return cm.nn.Linear(3, 1)


def measured(model, loss, batch, groups, population=None):
    backend = CalcmlBackend(model, loss, cm.optim.SGD(model.parameters(), lr=0.1))
    record = backend.step(batch)
    return backend.batch_noise(record, groups, population, step=1), backend, record


# -- the statistic, against per-example gradients computed here ---------------------------------

@pytest.mark.parametrize("B,groups,population", [(8, 8, None), (8, 4, None), (10, 4, None), (8, 8, 40),
                                                 (12, 3, 40)])
def test_noise_signal_matches_the_closed_form_per_example_gradients_of_linear_regression(B, groups, population):
    X, y = linear_data()
    X, y = X[:B], y[:B]
    model = linear_model()
    W, c = model.weight.data.copy(), model.bias.data.copy()
    r = X @ W.T + c - y                     # per-example residual; loss_i = r_i² (mean over 1 output)
    per_example = {"weight": 2 * r[:, :, None] * X[:, None, :], "bias": 2 * r}
    want, want_all = nu_from_examples(per_example, population, groups)
    got, _, _ = measured(model, F.mse_loss, (X, y), groups, population)
    assert got.batch_size == B and got.groups == groups and got.group_size == B // groups
    assert got.by_param == pytest.approx(want, rel=1e-10)
    assert got.noise_signal == pytest.approx(want_all, rel=1e-10)


def tanh_mlp(seed=3):
    cm.manual_seed(seed)
    return cm.nn.Sequential(cm.nn.Linear(2, 4), cm.nn.Tanh(), cm.nn.Linear(4, 1))


def test_per_example_noise_matches_finite_differences_on_a_tanh_mlp():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    model = tanh_mlp()
    arrays = [p.data.copy() for _, p in model.named_parameters()]
    names = [name for name, _ in model.named_parameters()]

    def example_loss(i):
        def f(W1, b1, W2, b2):   # the same net in plain numpy, one example
            h = np.tanh(X[i] @ W1.T + b1)
            return float(((h @ W2.T + b2 - y[i]) ** 2).mean())
        return f

    grads = [numeric_grad(example_loss(i), arrays) for i in range(len(X))]
    per_example = {name: np.stack([g[k] for g in grads]) for k, name in enumerate(names)}
    want, want_all = nu_from_examples(per_example)
    got, _, _ = measured(model, F.mse_loss, (X, y), groups=len(X))
    assert got.by_param == pytest.approx(want, rel=1e-6)
    assert got.noise_signal == pytest.approx(want_all, rel=1e-6)


def test_the_loss_averaging_or_summing_over_the_batch_gives_the_same_noise():
    X, y = linear_data()
    mean, _, _ = measured(linear_model(), F.mse_loss, (X[:16], y[:16]), groups=4)
    total, _, _ = measured(linear_model(), lambda p, t: F.mse_loss(p, t, reduction="sum"), (X[:16], y[:16]),
                           groups=4)
    assert total.noise_signal == pytest.approx(mean.noise_signal, rel=1e-10)


def test_a_batch_that_is_the_whole_data_set_has_no_noise_and_one_example_cannot_be_measured():
    X, y = linear_data(n=20)
    whole, _, _ = measured(linear_model(), F.mse_loss, (X, y), groups=4, population=20)
    assert whole.noise_signal == 0.0 and whole.groups == 0
    one, _, _ = measured(linear_model(), F.mse_loss, (X[:1], y[:1]), groups=4)
    assert one is None


# -- the two backends ------------------------------------------------------------------------------

@pytest.mark.parametrize("groups", [4, 12])
def test_calcml_and_torch_backends_give_the_same_noise(groups):
    torch = pytest.importorskip("torch")
    from calcml.debug.torch_backend import TorchBackend
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(12, 2)), rng.normal(size=(12, 1))
    a = tanh_mlp()
    b = torch.nn.Sequential(torch.nn.Linear(2, 4, dtype=torch.float64), torch.nn.Tanh(),
                            torch.nn.Linear(4, 1, dtype=torch.float64))
    with torch.no_grad():
        for p, q in zip(a.parameters(), b.parameters()):
            q.copy_(torch.from_numpy(p.data.copy()))
    mine, _, _ = measured(a, F.mse_loss, (X, y), groups, population=30)
    theirs_backend = TorchBackend(b, torch.nn.functional.mse_loss, torch.optim.SGD(b.parameters(), lr=0.1))
    batch = theirs_backend.as_batch((X, y))
    theirs = theirs_backend.batch_noise(theirs_backend.step(batch), groups, 30, step=1)
    assert theirs.by_param.keys() == mine.by_param.keys()
    assert theirs.by_param == pytest.approx(mine.by_param, rel=1e-10)
    assert theirs.noise_signal == pytest.approx(mine.noise_signal, rel=1e-10)


# -- measuring disturbs nothing ----------------------------------------------------------------------

def test_measuring_leaves_the_steps_gradients_and_the_engines_rng_alone():
    X, y = linear_data()
    model = linear_model()
    backend = CalcmlBackend(model, F.mse_loss, cm.optim.SGD(model.parameters(), lr=0.1))
    record = backend.step((X, y))
    before = {name: g.copy() for name, g in backend.grads().items()}
    rng_state = cm.random.generator().bit_generator.state
    np_state = np.random.get_state()[1].copy()
    backend.batch_noise(record, 8, None, step=1)
    assert all(np.array_equal(before[name], g) for name, g in backend.grads().items())
    assert cm.random.generator().bit_generator.state == rng_state
    assert np.array_equal(np.random.get_state()[1], np_state)


def _bayes_run(every: int):
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.BayesLinear(3, 4), cm.nn.Tanh(), cm.nn.Linear(4, 1))
    X, y = linear_data(n=32)
    spec = make_spec(model, F.mse_loss, (X, y), steps=6, batch_size=8)
    s = Session(spec, SessionConfig(batch_noise_every=every, curvature_every=0, noise_every=0))
    s.run_to_end()
    return s, [p.data.copy() for p in model.parameters()]


def test_a_run_trains_the_same_with_and_without_the_measurement():
    # Bayesian layers draw their weights from the engine's generator in every forward pass:
    # a measurement that did not put it back would change every later step
    measured_run, with_noise = _bayes_run(every=1)
    _, without = _bayes_run(every=0)
    assert measured_run.batch_noise is not None and measured_run.batch_noise.step == 6
    assert all(np.array_equal(a, b) for a, b in zip(with_noise, without))


def test_torch_measurement_leaves_gradients_rng_and_batch_norm_statistics_alone():
    torch = pytest.importorskip("torch")
    from calcml.debug.torch_backend import TorchBackend
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    backend = TorchBackend(model, torch.nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1))
    X, y = linear_data(n=32)
    record = backend.step(backend.as_batch((X, y)))
    grads = {name: g.copy() for name, g in backend.grads().items()}
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.random.get_rng_state()
    stats = backend.batch_noise(record, 8, None, step=1)
    assert stats is not None and stats.noise_signal > 0
    assert all(np.array_equal(grads[name], g) for name, g in backend.grads().items())
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert torch.equal(rng, torch.random.get_rng_state())


# -- in a session: schedule, history, warning, note ----------------------------------------------------

def config(**kw):
    return SessionConfig(curvature_every=0, **kw)


def test_measured_on_its_schedule_into_the_snapshot_and_the_history():
    X, y = linear_data()
    s = Session(make_spec(linear_model(), F.mse_loss, (X, y), steps=9, batch_size=8), config(batch_noise_every=4))
    snaps = []
    s.run_to_end(on_step=snaps.append)
    assert [x.batch_noise.step if x.batch_noise else None for x in snaps] == [None] * 3 + [4] * 4 + [8] * 2
    h = s.history.to_dict()
    kept = {step: value for step, value in zip(h["step"], h["batch_noise"]) if value is not None}
    assert kept.keys() == {4, 8} and kept[8] == snaps[-1].batch_noise.noise_signal
    assert [v for v in h["weight.batch_noise"] if v is not None][-1] == snaps[-1].batch_noise.by_param["weight"]
    assert snaps[-1].batch_noise.population == 40   # the data are arrays: the correction applies
    assert snapshot_over_the_wire(snaps[-1]).batch_noise == snaps[-1].batch_noise


def noisy_then_clean(noisy_steps: int):
    """Data as a function: `noisy_steps` batches of two examples whose targets pull the bias in
    opposite directions (residuals −11 and 9 at the starting weights: ν of the bias is 10), then
    batches of 64 clean examples of a line."""
    rng = np.random.default_rng(0)
    calls = [0]

    def data():
        calls[0] += 1
        if calls[0] <= noisy_steps:
            return np.zeros((2, 3)), np.array([[11.0], [-9.0]])
        Xc = rng.normal(size=(64, 3))
        return Xc, Xc @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    cm.manual_seed(0)
    model = cm.nn.Linear(3, 1)
    model.weight.data[...] = 0.0
    model.bias.data[...] = 0.0
    return make_spec(model, F.mse_loss, data, lr=0.01, steps=noisy_steps + 8)


def test_the_warning_fires_when_noise_dominates_and_clears_saying_what_changed():
    s = Session(noisy_then_clean(3), config(batch_noise_every=1))
    snaps = []
    s.run_to_end(on_step=snaps.append)
    first = snaps[0].batch_noise
    assert first.groups == 2 and first.group_size == 1 and first.population is None
    assert first.by_param["bias"] == pytest.approx(10.0, rel=1e-12)
    events = [(w.kind, w.event, w.step) for w in s.warnings if w.kind == "batch_noise"]
    # one measurement over the limit is not enough: the second in a row starts it
    assert events == [("batch_noise", "start", 2), ("batch_noise", "clear", 8)]
    start, clear = [w for w in s.warnings if w.kind == "batch_noise"]
    assert start.value == pytest.approx(snaps[1].batch_noise.noise_signal) and start.threshold == 2.0
    assert "mostly noise" in start.message and "a smaller lr (now 0.01)" in start.message
    assert "batch of about" in start.message
    assert snaps[-1].batch_noise.noise_signal < 1
    assert clear.message.startswith("cleared: batch_noise: noise/signal (measured at step 8) is now "
                                    f"{snaps[7].batch_noise.noise_signal:.3g} against the limit 2")


def test_one_noisy_measurement_alone_does_not_warn():
    s = Session(noisy_then_clean(1), config(batch_noise_every=1))
    s.run_to_end()
    h = s.history.to_dict()
    assert h["batch_noise"][0] > 2 and all(v < 1 for v in h["batch_noise"][1:])
    assert not [w for w in s.warnings if w.kind == "batch_noise"]


def test_no_warning_for_a_clean_batch_or_the_whole_data_set():
    X, y = linear_data(n=64, noise=0.0)
    calls = []

    def same_batch():   # the data set's size not known: no correction
        calls.append(1)
        return X, y
    s = Session(make_spec(linear_model(), F.mse_loss, same_batch, steps=5), config(batch_noise_every=1))
    s.run_to_end()
    assert 0 < s.batch_noise.noise_signal < 1
    assert not [w for w in s.warnings if w.kind == "batch_noise"]
    s = Session(make_spec(linear_model(), F.mse_loss, linear_data(n=64, noise=3.0), steps=5),
                config(batch_noise_every=1))
    s.run_to_end()
    assert s.batch_noise.noise_signal == 0.0 and s.batch_noise.groups == 0   # full batch: exact
    assert not [w for w in s.warnings if w.kind == "batch_noise"]


def test_a_failing_measurement_turns_it_off_with_a_note_and_training_goes_on():
    def picky_loss(pred, target):
        if pred.shape[0] < 4:
            raise ValueError("this loss needs at least 4 examples")
        return F.mse_loss(pred, target)
    X, y = linear_data()
    s = Session(make_spec(linear_model(), picky_loss, (X, y), steps=6, batch_size=8),
                config(batch_noise_every=2, batch_noise_groups=4))
    snap = s.run_to_end()
    assert s.step_count == 6 and s.stop_info is None
    note = snap.batch_noise.note
    assert note == "mini-batch noise is off: measuring it failed: ValueError: this loss needs at least 4 examples"
    assert s._batch_noise.schedule.every == 0
    assert build_report(s)["batch_noise"]["note"] == note


def test_the_report_and_the_headless_output_carry_it():
    from calcml.tui.headless import run_headless
    s = Session(noisy_then_clean(3), config(batch_noise_every=1))
    out = io.StringIO()
    run_headless(s, out=out)
    text = out.getvalue()
    assert "batch_noise" in text and "noise/signal" in text and "cleared " in text
    report = build_report(s)
    assert report["batch_noise"]["noise_signal"] == s.batch_noise.noise_signal
    assert report["history"]["batch_noise"][1] == pytest.approx(s.warnings[0].value)


def test_needed_batch_is_where_the_formula_reaches_the_limit():
    stats = batchnoise.BatchNoiseStats(step=1, noise_signal=2.0, batch_size=16, groups=16, population=None)
    assert batchnoise.needed_batch(stats) == 64           # ν² falls as 1/B: 16·2² examples
    stats = batchnoise.BatchNoiseStats(step=1, noise_signal=2.0, batch_size=16, groups=16, population=1000)
    needed = batchnoise.needed_batch(stats)
    spread = 4.0 * 16 / (1 - 16 / 1000)
    assert math.sqrt(spread / needed * (1 - needed / 1000)) <= 1.0 < math.sqrt(spread / (needed - 1)
                                                                               * (1 - (needed - 1) / 1000))
