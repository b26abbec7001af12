"""The debugger's Session: states, commands (also from another thread), per-step statistics
checked against independent numpy computations, snapshots, histograms and step-into traces."""
from __future__ import annotations

import copy
import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml.debug import Session, SessionConfig, Thresholds
from calcml.debug.codec import for_json, plain
from calcml.debug.session import StopInfo
from helpers import make_spec


def regression_data(n=16, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = rng.normal(size=(n, 1))
    return X, y


def mlp(act=cm.nn.Sigmoid, d=3, h=5, seed=0):
    cm.manual_seed(seed)
    return cm.nn.Sequential(cm.nn.Linear(d, h), act(), cm.nn.Linear(h, 1))


def weights(model) -> dict:
    return {name: p.data.copy() for name, p in model.named_parameters()}


# -- an independent numpy forward/backward of Linear -> activation -> Linear with MSE --------------
ACT = {
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(float)),
}


def numpy_mlp(W1, b1, W2, b2, X, y, act):
    f, df = ACT[act]
    z1 = X @ W1.T + b1
    a1 = f(z1)
    z2 = a1 @ W2.T + b2
    r = z2 - y
    loss = np.mean(r * r)
    dz2 = 2 * r / r.size
    da1 = dz2 @ W2
    dz1 = da1 * df(a1)
    return dict(loss=loss, a1=a1, dz1=dz1, da1=da1, dz2=dz2,
                grads={"0.weight": dz1.T @ X, "0.bias": dz1.sum(0), "2.weight": dz2.T @ a1, "2.bias": dz2.sum(0)})


def close(a, b, rtol=1e-9, atol=1e-12):
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


# ==================================================================================================
# states and commands
# ==================================================================================================

def test_starts_paused_and_does_nothing_until_told():
    model = mlp()
    before = weights(model)
    s = Session(make_spec(model, F.mse_loss, regression_data()))
    assert s.state == "paused" and not s.done
    for _ in range(3):
        assert s.tick() is None
    assert s.step_count == 0 and s.snapshot is None
    assert all(np.array_equal(before[k], v) for k, v in weights(model).items())


def test_run_pause_step_and_step_into():
    s = Session(make_spec(mlp(), F.mse_loss, regression_data()))
    s.run()
    a = s.tick()
    b = s.tick()
    assert s.state == "running" and a.step == 1 and b.step == 2 and a.state == "running"
    s.pause()
    assert s.tick() is None and s.state == "paused" and s.step_count == 2

    s.step(3)
    snaps = [s.tick() for _ in range(4)]
    assert [x.step for x in snaps[:3]] == [3, 4, 5] and snaps[3] is None
    assert s.state == "paused" and all(x.state == "paused" and x.trace is None for x in snaps[:3])

    s.step(5)
    s.tick()
    s.pause()                       # pause drops the steps still pending
    assert s.tick() is None and s.step_count == 6

    s.step_into()
    snap = s.tick()
    assert snap.step == 7 and snap.trace is not None and s.tick() is None
    s.step(1)
    assert s.tick().trace is None   # only the step-into step is traced


def test_max_steps_finishes_and_ignores_later_commands():
    s = Session(make_spec(mlp(), F.mse_loss, regression_data()), max_steps=4)
    final = s.run_to_end()
    assert s.state == "finished" and s.done and final.state == "finished"
    assert s.step_count == 4 and final.step == 4 and s.stop_info is None
    s.step(2)
    s.run()
    assert s.tick() is None and s.step_count == 4 and s.state == "finished"


def test_file_steps_used_when_max_steps_not_given():
    s = Session(make_spec(mlp(), F.mse_loss, regression_data(), steps=3))
    s.run_to_end()
    assert s.step_count == 3 and s.state == "finished"


def test_stop_is_user_reason_and_final():
    s = Session(make_spec(mlp(), F.mse_loss, regression_data()))
    s.run()
    s.tick()
    s.tick()
    s.stop()
    assert s.tick() is None
    assert s.state == "stopped" and s.done
    assert isinstance(s.stop_info, StopInfo)
    assert s.stop_info.reason == "user" and s.stop_info.step == 2
    s.run()
    s.step(3)
    assert s.tick() is None and s.step_count == 2 and s.state == "stopped"
    s.stop("again")                 # a second stop changes nothing
    s.tick()
    assert s.stop_info.reason == "user" and s.stop_info.detail != "again"


@pytest.mark.parametrize("call", [
    lambda s: s.step(0), lambda s: s.step(-3),
    lambda s: s.set_lr(-1), lambda s: s.set_lr(0), lambda s: s.set_lr(float("nan")),
    lambda s: s.set_lr(float("inf")),
    lambda s: s.set_regularizer("L3"), lambda s: s.set_regularizer("L2", -0.1),
    lambda s: s.set_regularizer("L1", float("nan")),
])
def test_bad_command_arguments_raise_at_once_and_queue_nothing(call):
    model = mlp()
    s = Session(make_spec(model, F.mse_loss, regression_data(), lr=0.1))
    with pytest.raises(ValueError):
        call(s)
    assert s.tick() is None and s.step_count == 0
    assert s.optimizer.param_groups[0]["lr"] == 0.1 and s.regularizer is None


def test_set_lr_changes_param_groups_and_the_actual_sgd_update():
    model = mlp()
    X, y = regression_data()
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=0.1))
    s.set_lr(0.37)
    for step in range(2):           # the new rate stays for later steps too
        before = weights(model)
        ref = numpy_mlp(*(before[k] for k in ("0.weight", "0.bias", "2.weight", "2.bias")), X, y, "sigmoid")
        s.step(1)
        snap = s.tick()
        assert s.optimizer.param_groups[0]["lr"] == 0.37 and snap.lr == 0.37 and s.lr == 0.37
        for name, p in model.named_parameters():
            np.testing.assert_allclose(p.data - before[name], -0.37 * ref["grads"][name], rtol=1e-9, atol=1e-14)
    assert list(s.history.series("lr")) == [0.37, 0.37]


def test_set_lr_reaches_every_param_group():
    model = mlp()
    opt = cm.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.5}], lr=0.1)
    s = Session(make_spec(model, F.mse_loss, regression_data(), optimizer=opt))
    s.set_lr(0.02)
    s.step(1)
    s.tick()
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.02]


def test_set_regularizer_switches_live_and_penalty_gradients_match():
    model = mlp()
    X, y = regression_data()
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=0.05))
    plan = [("L2", 0.1), ("L1", 0.2), ("none", None), ("l2", 0.3)]
    for kind, lam in plan:
        s.set_regularizer(kind, lam)
        before = weights(model)
        ref = numpy_mlp(*(before[k] for k in ("0.weight", "0.bias", "2.weight", "2.bias")), X, y, "sigmoid")
        s.step(1)
        snap = s.tick()
        expected_kind = kind.upper() if kind != "none" else "none"
        assert snap.regularizer == (expected_kind, lam if lam is not None else 0.0)
        penalty = 0.0
        for layer in snap.layers:
            for short, p in layer.params.items():
                W = before[p.name]
                if expected_kind == "L2" and short == "weight":
                    pen = 2 * lam * W
                    penalty += lam * np.sum(W * W)
                elif expected_kind == "L1" and short == "weight":
                    pen = lam * np.sign(W)
                    penalty += lam * np.sum(np.abs(W))
                else:
                    pen = np.zeros_like(W)   # no regulariser, or a bias (not penalised by default)
                if expected_kind == "L2" and short == "weight":
                    assert close(p.penalty_grad_norm, 2 * lam * np.linalg.norm(W))
                if expected_kind == "L1" and short == "weight":
                    assert close(p.penalty_grad_norm, lam * math.sqrt(np.count_nonzero(W)))
                assert close(p.penalty_grad_norm, np.linalg.norm(pen))
                assert close(p.grad_norm, np.linalg.norm(ref["grads"][p.name]))
                total = ref["grads"][p.name] + pen
                assert close(p.total_grad_norm, np.linalg.norm(total))
                # the optimiser used data gradient + penalty gradient
                np.testing.assert_allclose(model_param(model, p.name) - W, -0.05 * total, rtol=1e-9, atol=1e-14)
        assert close(snap.penalty, penalty)
    assert s.regularizer.kind == "L2" and s.regularizer.lam == 0.3


def model_param(model, name):
    return dict(model.named_parameters())[name].data


def test_set_regularizer_without_lambda_keeps_the_current_strength():
    model = mlp()
    s = Session(make_spec(model, F.mse_loss, regression_data(), regularizer=cm.reg.L1(0.07)))
    s.set_regularizer("L2")
    s.step(1)
    assert s.tick().regularizer == ("L2", 0.07)


# ==================================================================================================
# commands from another thread
# ==================================================================================================

def test_commands_from_another_thread_are_each_applied_exactly_once():
    cm.manual_seed(1)
    model = cm.nn.Linear(2, 1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 2))
    s = Session(make_spec(model, F.mse_loss, (X, X @ np.array([[1.0], [-2.0]])), lr=1e-4),
                config=SessionConfig(histogram_every=10_000))
    lrs = [1e-3 * (k + 1) for k in range(10)]

    def submit():
        for k in range(1000):
            s.step(1)
            if k % 100 == 99:
                s.set_lr(lrs[k // 100])
            if k % 25 == 0:
                threading.Event().wait(0.0005)   # let the driver interleave

    thread = threading.Thread(target=submit)
    thread.start()
    ticks = 0
    while thread.is_alive():
        if s.tick() is not None:
            ticks += 1
    thread.join()
    while s.tick() is not None:
        ticks += 1
    assert ticks == 1000 and s.step_count == 1000
    assert s.tick() is None and s.state == "paused"
    lr_series = s.history.series("lr")
    assert len(lr_series) == 1000
    assert np.all(np.diff(lr_series) >= 0)            # applied in the order submitted
    assert set(lr_series) <= set(lrs) | {1e-4}
    assert s.lr == lrs[-1] and s.optimizer.param_groups[0]["lr"] == lrs[-1]
    np.testing.assert_array_equal(s.history.series("step"), np.arange(1, 1001))


# ==================================================================================================
# per-layer statistics against numpy
# ==================================================================================================

@pytest.mark.parametrize("act_name, act", [("sigmoid", cm.nn.Sigmoid), ("tanh", cm.nn.Tanh), ("relu", cm.nn.ReLU)])
def test_layer_statistics_match_a_numpy_forward_and_backward(act_name, act):
    model = mlp(act)
    X, y = regression_data()
    lr = 0.3
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=lr))
    before = weights(model)
    ref = numpy_mlp(*(before[k] for k in ("0.weight", "0.bias", "2.weight", "2.bias")), X, y, act_name)
    s.step(1)
    snap = s.tick()
    assert close(snap.loss, ref["loss"])
    assert [l.name for l in snap.layers] == ["0", "1", "2"]
    assert [l.type for l in snap.layers] == ["Linear", type(model[1]).__name__, "Linear"]
    after = weights(model)
    for layer in snap.layers:
        for short, p in layer.params.items():
            g = ref["grads"][p.name]
            assert p.shape == before[p.name].shape
            assert close(p.grad_norm, np.linalg.norm(g))
            assert close(p.total_grad_norm, np.linalg.norm(g))
            assert p.penalty_grad_norm == 0.0
            assert close(p.weight_norm, np.linalg.norm(after[p.name]))
            assert close(p.update_norm, lr * np.linalg.norm(g))
            # plain SGD: ‖Δθ‖/‖θ‖ = η‖g‖/‖θ‖ (θ after the step, the weights the snapshot shows)
            assert close(p.update_ratio, lr * np.linalg.norm(g) / np.linalg.norm(after[p.name]))
    l0, l1, l2 = snap.layers
    # ‖∂L/∂input‖ and ‖∂L/∂output‖ of each layer
    assert l0.grad_in_norm is None                   # its input is data, not a tensor needing grad
    assert close(l0.grad_out_norm, np.linalg.norm(ref["dz1"]))
    assert close(l1.grad_in_norm, np.linalg.norm(ref["dz1"]))
    assert close(l1.grad_out_norm, np.linalg.norm(ref["da1"]))
    assert close(l2.grad_in_norm, np.linalg.norm(ref["da1"]))
    assert close(l2.grad_out_norm, np.linalg.norm(ref["dz2"]))
    assert close(l1.grad_ratio, np.linalg.norm(ref["dz1"]) / np.linalg.norm(ref["da1"]))
    # the activation's local derivative, from its output at this step
    a1 = ref["a1"]
    d = ACT[act_name][1](a1)
    assert l1.activation == act_name and close(l1.mean_local_derivative, d.mean())
    assert l0.activation is None and l0.mean_local_derivative is None
    assert l1.output_shape == (16, 5) and l2.output_shape == (16, 1)
    if act_name == "sigmoid":
        assert l1.mean_local_derivative <= 0.25


def test_grad_norms_through_a_deeper_tanh_network_match_cm_grad_on_a_rerun_graph():
    cm.manual_seed(3)
    model = cm.nn.Sequential(cm.nn.Linear(3, 6), cm.nn.Tanh(), cm.nn.Linear(6, 6), cm.nn.Tanh(),
                             cm.nn.Linear(6, 2))
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    twin = copy.deepcopy(model)
    h = cm.tensor(X)
    outs = []
    for layer in twin:
        h = layer(h)
        outs.append(h)
    loss = F.mse_loss(h, cm.tensor(y))
    grads = cm.grad(loss, outs)
    s = Session(make_spec(model, F.mse_loss, (X, y)))
    s.step(1)
    snap = s.tick()
    assert close(snap.loss, float(loss.data))
    for k, layer in enumerate(snap.layers):
        assert close(layer.grad_out_norm, np.linalg.norm(grads[k].data))
        if k:
            assert close(layer.grad_in_norm, np.linalg.norm(grads[k - 1].data))
    for k in (1, 3):
        t = outs[k].data
        assert close(snap.layers[k].mean_local_derivative, np.mean(1 - t * t))


def test_a_layer_that_returns_its_input_reports_the_same_gradient_in_and_out():
    cm.manual_seed(4)
    model = cm.nn.Sequential(cm.nn.Linear(3, 5), cm.nn.Identity(), cm.nn.Tanh(), cm.nn.Linear(5, 1))
    X, y = regression_data(d=3)
    twin = copy.deepcopy(model)
    hidden = twin[0](cm.tensor(X))
    loss = F.mse_loss(twin[3](twin[2](twin[1](hidden))), cm.tensor(y))
    (g,) = cm.grad(loss, [hidden])
    s = Session(make_spec(model, F.mse_loss, (X, y)))
    s.step(1)
    identity = s.tick().layers[1]
    assert identity.name == "1" and identity.type == "Identity"
    assert close(identity.grad_in_norm, np.linalg.norm(g.data))
    assert close(identity.grad_out_norm, np.linalg.norm(g.data))


@pytest.mark.parametrize("budget, measured", [
    (None, [1, 10, 20, 30, 35]),   # every detail_every steps, the first step, and the last
    (1e9, [1, 10, 20, 30, 35]),    # a budget measuring costs nothing against: the same
    (1e-12, [1, 35]),              # a budget no measurement fits in: only where the run starts and rests
])
def test_update_ratios_are_measured_every_detail_every_steps_within_the_budget(budget, measured):
    s = Session(make_spec(mlp(), F.mse_loss, regression_data(), steps=35),
                config=SessionConfig(detail_every=10, detail_budget=budget))
    s.run_to_end()
    steps = s.history.series("step")
    for series in ("0.weight.update_ratio", "0.weight.sparsity", "2.bias.weight_norm"):
        assert steps[np.isfinite(s.history.series(series))].astype(int).tolist() == measured
    assert np.isfinite(s.history.series("0.weight.grad_norm")).all()   # gradients: every step


def test_calcml_debug_holds_curvature_and_update_ratios_to_a_share_of_training_time():
    from calcml.debug.session import session_config
    config = session_config()
    assert config.curvature_budget == 0.1 and config.detail_budget == 0.02
    assert session_config(curvature_every=7).curvature_every == 7


def test_sparsity_counts_weights_below_the_threshold():
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(4, 3), cm.nn.Tanh(), cm.nn.Linear(3, 1))
    W = model[0].weight.data
    W[...] = np.array([[1e-5, 0.3, -0.4, 0.0], [0.5, -2e-4, 0.7, 0.2], [-0.9, 0.05, 5e-4, -0.6]])
    X, y = regression_data(d=4)
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=1e-12))
    s.step(1)
    snap = s.tick()
    assert close(snap.layers[0].params["weight"].sparsity, 4 / 12)
    s2 = Session(make_spec(model, F.mse_loss, (X, y), lr=1e-12),
                 config=SessionConfig(thresholds=Thresholds(sparsity_threshold=0.35)))
    s2.step(1)
    snap2 = s2.tick()
    for layer in snap2.layers:
        for p in layer.params.values():
            data = model_param(model, p.name)
            assert close(p.sparsity, np.mean(np.abs(data) < 0.35))
    assert close(snap2.layers[0].params["weight"].sparsity, 7 / 12)


def test_dead_relu_fraction_from_biases():
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(3, 8), cm.nn.ReLU(), cm.nn.Linear(8, 1))
    model[0].weight.data[...] = 0.1 * np.random.default_rng(0).normal(size=(8, 3))
    model[0].bias.data[...] = [-10, -10, -10, 10, 10, 10, 10, 10]   # units 0..2 never fire
    X, y = regression_data()
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=1e-6))
    s.step(1)
    relu = s.tick().layers[1]
    assert relu.activation == "relu"
    assert relu.dead_fraction == 3 / 8
    assert close(relu.mean_local_derivative, 5 / 8)
    assert relu.saturated_fraction is None


@pytest.mark.parametrize("act, big", [(cm.nn.Sigmoid, 40.0), (cm.nn.Tanh, 20.0)])
def test_saturated_fraction_from_huge_biases(act, big):
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(3, 8), act(), cm.nn.Linear(8, 1))
    model[0].weight.data[...] = 0.01 * np.random.default_rng(0).normal(size=(8, 3))
    model[0].bias.data[...] = [big, -big, big, 0, 0, 0, 0, 0]
    X, y = regression_data()
    z = X @ model[0].weight.data.T + model[0].bias.data
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=1e-6))
    s.step(1)
    layer = s.tick().layers[1]
    if act is cm.nn.Sigmoid:
        a = 1 / (1 + np.exp(-z))
        d, limit = a * (1 - a), 0.01 * 0.25
    else:
        a = np.tanh(z)
        d, limit = 1 - a * a, 0.01
    assert layer.saturated_fraction == 3 / 8 == np.mean(np.all(d < limit, axis=0))
    assert close(layer.mean_local_derivative, d.mean())
    assert layer.dead_fraction is None


def test_sigmoid_local_derivative_never_exceeds_a_quarter():
    cm.manual_seed(0)
    layers = []
    for i in range(4):
        layers += [cm.nn.Linear(3 if i == 0 else 6, 6), cm.nn.Sigmoid()]
    model = cm.nn.Sequential(*layers, cm.nn.Linear(6, 1))
    for m in model:
        if isinstance(m, cm.nn.Linear):
            m.weight.data *= 1e-4        # z ≈ 0: σ'(z) ≈ 1/4, the maximum
            m.bias.data[...] = 0
    X, y = regression_data()
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=1e-6))
    s.step(1)
    sig = [l for l in s.tick().layers if l.activation == "sigmoid"]
    assert len(sig) == 4
    for l in sig:
        assert 0.2499 < l.mean_local_derivative <= 0.25


# ==================================================================================================
# snapshots, histograms, step-into
# ==================================================================================================

def walk(obj, path="snapshot"):
    """Yield (path, value) for every leaf, checking every record (msgspec Struct) or dataclass
    met is frozen."""
    import ast
    import msgspec
    from calcml import Tensor
    assert not isinstance(obj, Tensor), f"{path} holds a Tensor"
    if isinstance(obj, np.ndarray):
        yield path, obj
    elif isinstance(obj, msgspec.Struct):
        assert type(obj).__struct_config__.frozen, f"{path}: {type(obj).__name__} is not frozen"
        for name in obj.__struct_fields__:
            yield from walk(getattr(obj, name), f"{path}.{name}")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        assert type(obj).__dataclass_params__.frozen, f"{path}: {type(obj).__name__} is not frozen"
        for f in dataclasses.fields(obj):
            yield from walk(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):   # a NamedTuple (LayerStats, ParamStats)
        for name in obj._fields:
            yield from walk(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from walk(v, f"{path}[{k!r}]")
    elif isinstance(obj, Sequence) and not isinstance(obj, str):   # tuples, lists, StepLayers
        for i, v in enumerate(obj):
            yield from walk(v, f"{path}[{i}]")
    elif isinstance(obj, ast.AST):
        return                                   # a condition breakpoint's parsed expression
    else:
        assert obj is None or isinstance(obj, (int, float, str, bool, np.integer, np.floating)), \
            f"{path}: unexpected {type(obj).__name__}"
        yield path, obj


def test_snapshots_are_frozen_and_small():
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(8, 64), cm.nn.ReLU(), cm.nn.Linear(64, 64), cm.nn.Sigmoid(),
                             cm.nn.Linear(64, 1))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 8)), rng.normal(size=(32, 1))
    bins = 7
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=0.01, regularizer=cm.reg.L2(1e-3)),
                config=SessionConfig(histogram_bins=bins, histogram_every=2))
    s.add_breakpoint("step 3")
    s.step_into()
    snaps = [s.tick()]
    s.run()
    snaps += [s.tick(), s.tick()]
    assert snaps[-1].hit is not None and snaps[0].trace is not None and snaps[1].histograms is not None
    for snap in snaps:
        arrays = [(p, v) for p, v in walk(snap) if isinstance(v, np.ndarray)]
        for path, a in arrays:
            assert a.size <= bins + 1, f"{path} has {a.size} elements"
        if snap.histograms is not None:
            assert arrays
        with pytest.raises(AttributeError):      # Snapshot, LayerStats and ParamStats are NamedTuples
            snap.loss = 0.0
        with pytest.raises(AttributeError):
            snap.layers[0].grad_out_norm = 1.0
        with pytest.raises(AttributeError):
            snap.layers[0].params["weight"].grad_norm = 1.0
    # a later step does not change an earlier snapshot
    first = snaps[1]
    kept = (first.loss, first.layers[0].params["weight"].weight_norm,
            first.histograms["0.weight.weight_hist"][0].copy())
    s.step(1)
    assert s.tick().step == 4
    assert (first.loss, first.layers[0].params["weight"].weight_norm) == kept[:2]
    np.testing.assert_array_equal(first.histograms["0.weight.weight_hist"][0], kept[2])


def test_histograms_every_n_steps_while_running_and_after_step_into():
    model = mlp()
    X, y = regression_data()
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=0.1),
                config=SessionConfig(histogram_every=5, histogram_bins=9), max_steps=13)
    s.run()
    with_hist = []
    while not s.done:
        snap = s.tick()
        if snap.histograms is not None:
            with_hist.append(snap.step)
            for name, p in model.named_parameters():
                counts, edges = snap.histograms[f"{name}.weight_hist"]
                ref_counts, ref_edges = np.histogram(p.data, bins=9)
                np.testing.assert_array_equal(counts, ref_counts)
                np.testing.assert_allclose(edges, ref_edges)
                gcounts, _ = snap.histograms[f"{name}.grad_hist"]
                np.testing.assert_array_equal(gcounts, np.histogram(p.grad, bins=9)[0])
    assert with_hist[:2] == [5, 10] and with_hist[2:] in ([], [13])   # every 5 steps (the last: either)
    s2 = Session(make_spec(mlp(), F.mse_loss, (X, y)), config=SessionConfig(histogram_every=1000))
    s2.run()
    assert s2.tick().histograms is None
    s2.step_into()
    assert s2.tick().histograms is not None


def test_step_into_trace_covers_forward_then_backward_with_formulas():
    model = mlp()
    X, y = regression_data()
    twin = copy.deepcopy(model)
    with cm.trace() as ref:
        F.mse_loss(twin(X), y).backward()
    s = Session(make_spec(model, F.mse_loss, (X, y)))
    s.step_into()
    snap = s.tick()
    ops = snap.trace.ops
    phases = [op.phase for op in ops]
    n_fwd = phases.count("forward")
    assert phases == ["forward"] * n_fwd + ["backward"] * (len(ops) - n_fwd)
    assert [op.index for op in ops] == list(range(len(ops)))
    assert [op.op for op in ops[:n_fwd]] == [r.op for r in ref.forward]
    assert [op.op for op in ops[n_fwd:]] == [r.op for r in ref.backward]
    assert [op.scope for op in ops[:n_fwd]] == [r.scope for r in ref.forward]
    assert all(op.formulas and all(isinstance(f, str) and f for f in op.formulas) for op in ops)
    fwd_ids = {op.id for op in ops[:n_fwd]}
    assert {op.id for op in ops[n_fwd:]} <= fwd_ids        # each backward op undoes a forward one
    assert {op.scope for op in ops[:n_fwd]} >= {"0", "1", "2"}
    # the recorded values are the step's values
    for op, r in zip(ops[:n_fwd], ref.forward):
        v = r.value
        assert op.value.shape == v.shape and close(op.value.mean, float(np.mean(v)))
        assert close(op.value.max, float(np.max(v)))
    assert close(ops[n_fwd - 1].value.mean, snap.loss)
    for op, r in zip(ops[n_fwd:], ref.backward):
        assert close(op.upstream.mean, float(np.mean(r.upstream)))
        for g, rg in zip(op.grads, r.grads):
            assert (g is None) == (rg is None)
            if g is not None:
                assert close(g.std, float(np.std(rg)), rtol=1e-7, atol=1e-12)
        # local factors, e.g. W^T for matmul: the weights used by this step, not the updated ones
        for f, rf in zip(op.factors, r.factors):
            if f is not None and rf is not None:
                assert close(f.mean, float(np.mean(rf)), rtol=1e-9, atol=1e-12)
                assert close(f.max, float(np.max(rf)), rtol=1e-9, atol=1e-12)
    assert snap.trace.first_non_finite() is None
    assert any("0.weight" in op.inputs for op in ops)        # parameters are named


def test_history_records_each_step_of_the_session():
    model = mlp()
    s = Session(make_spec(model, F.mse_loss, regression_data(), val_data=regression_data(seed=5)),
                config=SessionConfig(history_capacity=8, val_every=3), max_steps=20)
    losses = []
    s.run_to_end(on_step=lambda snap: losses.append(snap.loss))
    assert len(losses) == 20 and len(s.history) == 8
    np.testing.assert_array_equal(s.history.series("step"), np.arange(13, 21))
    np.testing.assert_array_equal(s.history.series("loss"), losses[-8:])
    val = s.history.series("val_loss")
    assert [bool(np.isfinite(v)) for v in val] == [k % 3 == 0 for k in range(13, 21)]
    assert "0.weight.grad_norm" in s.history and "1.mean_local_derivative" in s.history


def test_a_generator_running_dry_stops_with_data_exhausted():
    X, y = regression_data()
    s = Session(make_spec(mlp(), F.mse_loss, ((X, y) for _ in range(3))))
    final = s.run_to_end()
    assert s.state == "stopped" and s.stop_info.reason == "data_exhausted" and s.step_count == 3
    assert final.stop.reason == "data_exhausted"


def test_errors_in_the_users_code_stop_the_session_with_the_reason():
    X, y = regression_data()
    s = Session(make_spec(mlp(), lambda pred, target: (pred - target) * 1.0, (X, y)))   # not a scalar
    s.run_to_end()
    assert s.state == "stopped" and s.stop_info.reason == "error" and "scalar" in s.stop_info.detail

    def broken():
        raise KeyError("no such column")
    model = mlp()
    kept = weights(model)
    s = Session(make_spec(model, F.mse_loss, broken))
    s.run_to_end()
    assert s.stop_info.reason == "error" and "no such column" in s.stop_info.detail and s.step_count == 0
    assert all(np.array_equal(kept[k], v) for k, v in weights(model).items())


def test_a_snapshots_layers_read_late_are_those_of_its_step():
    """A snapshot's statistics are built when first read; read 25 steps later (past several
    update-ratio measurements and a curvature one), they are the ones read at once on a twin."""
    X, y = regression_data()
    config = dict(detail_every=3, curvature_every=10, histogram_every=1000)
    early, late = (Session(make_spec(mlp(seed=3), F.mse_loss, (X, y), lr=0.05), config=SessionConfig(**config))
                   for _ in range(2))
    early.run()
    late.run()
    read_at_once, kept = {}, {}
    for _ in range(12):
        snap = early.tick()
        read_at_once[snap.step] = for_json(plain(snap.layers))
        kept[snap.step] = late.tick()
    for _ in range(25):
        late.tick()
    for step in (1, 2, 3, 11, 12):
        assert for_json(plain(kept[step].layers)) == read_at_once[step], f"step {step}"
    assert kept[11].layers == tuple(kept[11].layers) and len(kept[11].layers) == len(read_at_once[11])


def test_a_finished_run_trains_on_and_a_stopped_one_does_not():
    from pathlib import Path
    from calcml.debug import load_model_file
    samples = Path(__file__).resolve().parents[1] / "sample_models"
    s = Session(load_model_file(str(samples / "xor_mlp.py")), max_steps=5)
    s.run_to_end()
    assert s.state == "finished" and s.step_count == 5
    s.train_on(7)
    final = s.run_to_end()
    assert s.state == "finished" and s.step_count == 12 and final.step == 12
    assert [h for h in s.history.series("loss") if h == h][-1] == final.loss
    stopped = Session(load_model_file(str(samples / "nan_demo.py")))
    stopped.run_to_end()
    assert stopped.state == "stopped"
    stopped.train_on(5)
    assert stopped.run_to_end() is None or stopped.state == "stopped"
    assert stopped.state == "stopped"


# -- the numbers measured at rest: a pause, a breakpoint, the end -----------------------------------
def _rest_session(steps=None, **config):
    model = mlp()
    s = Session(make_spec(model, F.mse_loss, regression_data(), steps=steps),
                config=SessionConfig(detail_every=1000, histogram_every=1000, **config))
    return model, s


def _assert_measured_now(snap, model, before):
    """The snapshot's ‖θ‖, ‖Δθ‖, update ratio and sparsity are those of the weights now and of the
    last step's update (computed here from copies of the weights), and its histograms are taken."""
    now = weights(model)
    for layer in snap.layers:
        for p in layer.params.values():
            w, dw = now[p.name], now[p.name] - before[p.name]
            assert close(p.weight_norm, np.linalg.norm(w))
            assert close(p.update_norm, np.linalg.norm(dw)) and np.linalg.norm(dw) > 0
            assert close(p.update_ratio, np.linalg.norm(dw) / np.linalg.norm(w))
    counts, edges = snap.histograms["0.weight.weight_hist"]
    assert close(edges[0], now["0.weight"].min()) and close(edges[-1], now["0.weight"].max())
    assert sum(counts) == now["0.weight"].size


def test_a_pause_while_running_measures_the_last_step_at_rest():
    model, s = _rest_session()
    s.may_pause = True          # as under the interface, where space pauses after any step
    s.run()
    for _ in range(6):
        s.tick()
    before = weights(model)
    assert s.tick().layers[0].params["weight"].weight_norm != np.linalg.norm(before["0.weight"])
    s.pause()
    assert s.tick() is None and s.state == "paused" and s.snapshot.step == 7
    _assert_measured_now(s.snapshot, model, before)
    before = weights(model)
    s.step(1)
    _assert_measured_now(s.tick(), model, before)


def test_a_pause_without_a_front_end_keeps_no_copy_of_the_weights():
    model, s = _rest_session()     # headless: only breakpoints and the end stop a run, and both are known
    s.run()
    for _ in range(7):
        s.tick()
    stale = s.snapshot.layers[0].params["weight"].weight_norm
    s.pause()
    s.tick()
    assert s.snapshot.layers[0].params["weight"].weight_norm == stale   # step 1's: nothing was held


def test_a_breakpoint_measures_its_step_at_rest_and_into_the_history():
    model, s = _rest_session()
    s.add_breakpoint("loss < 1e9 and step >= 7")
    s.run()
    for _ in range(6):
        s.tick()
    before = weights(model)
    snap = s.tick()
    assert snap.hit is not None and snap.step == 7 and s.state == "paused"
    _assert_measured_now(snap, model, before)
    steps = s.history.series("step")
    measured = steps[np.isfinite(s.history.series("0.weight.weight_norm"))].astype(int).tolist()
    assert measured == [1, 7]


def test_the_last_step_is_measured_at_rest():
    model, s = _rest_session(steps=7)
    s.run()
    for _ in range(6):
        s.tick()
    before = weights(model)
    snap = s.tick()
    assert snap.state == "finished"
    _assert_measured_now(snap, model, before)


def test_a_breakpoint_on_an_update_ratio_reads_every_step():
    """update_ratio is measured every few steps; a breakpoint that reads it has it every step, so
    it fires at the first step where it holds (found here from copies of the weights)."""
    model = mlp()
    probe = copy.deepcopy(model)
    X, y = regression_data()
    optimizer = cm.optim.SGD(probe.parameters(), lr=0.1)
    ratios = []
    for _ in range(40):
        w = probe[0].weight.data.copy()
        loss = F.mse_loss(probe(cm.tensor(X)), cm.tensor(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        new = probe[0].weight.data
        ratios.append(float(np.linalg.norm(new - w) / np.linalg.norm(new)))
    assert ratios[0] > ratios[-1]
    limit = (ratios[12] + ratios[13]) / 2 if ratios[12] > ratios[13] else None
    first = next(k + 1 for k, r in enumerate(ratios) if r < limit)
    assert first % 10 and first > 1
    s = Session(make_spec(model, F.mse_loss, (X, y)), config=SessionConfig(detail_every=1000))
    s.add_breakpoint(f'update_ratio("0.weight") < {limit!r}')
    snap = s.run_to_end()
    assert snap.hit is not None and snap.step == first
    assert close(snap.layers[0].params["weight"].update_ratio, ratios[first - 1])
