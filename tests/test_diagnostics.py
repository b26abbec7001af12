"""Warnings: each kind fires on a model built to show it, stays silent on a healthy twin, is
reported once when it starts and once when it clears, and follows configurable thresholds."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import calcml as cm
import calcml.nn.functional as F
from calcml.debug import KINDS, Session, SessionConfig, Thresholds
from calcml.debug.diagnostics import Condition, WarningMonitor
from calcml.debug.quantities.activation_health import activation_conditions
from calcml.debug.quantities.chain_rule import chain_products, gradient_conditions
from helpers import make_spec


def started(session) -> set:
    return {e.kind for e in session.warnings if e.event == "start"}


def run(spec, steps, **config):
    s = Session(spec, config=SessionConfig(**config) if config else None, max_steps=steps)
    snaps = []
    s.run_to_end(on_step=snaps.append)
    return s, snaps


MOONS = cm.data.moons(n=128, noise=0.1, seed=0)


def deep_sigmoid(depth=8, width=16):
    cm.manual_seed(0)
    layers = [cm.nn.Linear(2, width), cm.nn.Sigmoid()]
    for _ in range(depth - 2):
        layers += [cm.nn.Linear(width, width), cm.nn.Sigmoid()]
    return cm.nn.Sequential(*layers, cm.nn.Linear(width, 2))


def he_relu(depth=3, width=16, gain=1.0):
    cm.manual_seed(0)
    layers = [cm.nn.Linear(2, width), cm.nn.ReLU()]
    for _ in range(depth - 2):
        layers += [cm.nn.Linear(width, width), cm.nn.ReLU()]
    model = cm.nn.Sequential(*layers, cm.nn.Linear(width, 2))
    for m in model:
        if isinstance(m, cm.nn.Linear):
            cm.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            m.weight.data *= gain
            cm.nn.init.zeros_(m.bias)
    return model


# -- vanishing / exploding ----------------------------------------------------------------------------

def test_vanishing_gradient_on_the_early_layers_of_a_deep_sigmoid_network():
    model = deep_sigmoid(depth=8)
    twin = copy.deepcopy(model)
    s, snaps = run(make_spec(model, F.cross_entropy, MOONS, lr=0.1), 10)
    assert started(s) == {"vanishing_gradient"}
    first = [e for e in s.warnings if e.step == 1]
    layers = {e.layer for e in first}
    linear = [l.name for l in snaps[0].layers if l.type == "Linear"]
    assert linear[0] in layers and linear[-1] not in layers
    # the reported value is the chain-rule product ‖∂L/∂a_k‖ / ‖∂L/∂a_last‖, computed independently
    h = cm.tensor(MOONS[0])
    outs = []
    for layer in twin:
        h = layer(h)
        outs.append(h)
    grads = cm.grad(F.cross_entropy(h, MOONS[1]), outs)
    top = np.linalg.norm(grads[-1].data)
    for e in first:
        k = int(e.layer)
        assert math.isclose(e.value, np.linalg.norm(grads[k].data) / top, rel_tol=1e-9)
        assert e.value < Thresholds().vanishing_ratio and e.threshold == Thresholds().vanishing_ratio
        assert "chain-rule" in e.message
    # and the sigmoid factors are each at most 1/4
    for snap in snaps:
        for l in snap.layers:
            if l.activation == "sigmoid":
                assert l.mean_local_derivative <= 0.25


def test_no_warning_for_a_shallow_relu_network_with_he_init_on_the_same_data():
    s, snaps = run(make_spec(he_relu(depth=3), F.cross_entropy, MOONS, lr=0.1), 30)
    assert started(s) == set() and len(s.warnings) == 0
    products = [p for _, p in chain_products(snaps[0].layers)]
    assert products and min(products) > 1e-2


def test_exploding_gradient_from_too_large_initial_weights():
    X, y = cm.data.spirals(k=3, n=150, seed=0)
    cm.manual_seed(0)
    layers = [cm.nn.Linear(2, 32), cm.nn.ReLU()]
    for _ in range(8):
        layers += [cm.nn.Linear(32, 32), cm.nn.ReLU()]
    model = cm.nn.Sequential(*layers, cm.nn.Linear(32, 3))
    for m in model:
        if isinstance(m, cm.nn.Linear):
            cm.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            m.weight.data *= 3.0
            cm.nn.init.zeros_(m.bias)
    s, snaps = run(make_spec(model, F.cross_entropy, (X, y), lr=1e-12), 5)
    assert started(s) == {"exploding_gradient"}
    assert "0" in {e.layer for e in s.warnings}
    # the same network at He scale is quiet
    s2, _ = run(make_spec(he_relu(depth=10, width=32, gain=1.0), F.cross_entropy, (X, y), lr=1e-12), 5)
    assert "exploding_gradient" not in started(s2)


def test_exploding_gradient_norm_threshold_is_configurable():
    rng = np.random.default_rng(0)
    X = 1e3 * rng.normal(size=(32, 4))
    y = X @ rng.normal(size=(4, 1))
    cm.manual_seed(0)
    spec = lambda: make_spec(cm.nn.Linear(4, 1), F.mse_loss, (X, y), lr=1e-12)
    s, snaps = run(spec(), 3)
    assert started(s) == {"exploding_gradient"}
    g = snaps[0].layers[0].params["weight"].grad_norm
    assert g > 1e3
    s2, _ = run(spec(), 3, thresholds=Thresholds(exploding_norm=10 * g))
    assert started(s2) == set()


def test_vanishing_ratio_threshold_is_configurable():
    spec = lambda: make_spec(he_relu(depth=3), F.cross_entropy, MOONS, lr=0.1)
    s, snaps = run(spec(), 2)
    products = dict((l.name, p) for l, p in chain_products(snaps[0].layers))
    s2, _ = run(spec(), 2, thresholds=Thresholds(vanishing_ratio=1.5 * max(products.values())))
    assert started(s2) == {"vanishing_gradient"}
    assert {e.layer for e in s2.warnings} == set(products)


# -- activations --------------------------------------------------------------------------------------

def dead_model(n_dead, width=8):
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(2, width), cm.nn.ReLU(), cm.nn.Linear(width, 2))
    model[0].weight.data *= 0.1
    model[0].bias.data[...] = [-10.0] * n_dead + [1.0] * (width - n_dead)
    return model


def test_dead_relu_fires_on_the_relu_layer():
    s, snaps = run(make_spec(dead_model(6), F.cross_entropy, MOONS, lr=0.1), 20)
    assert started(s) == {"dead_relu"}
    (event,) = s.warnings                      # once, although it holds every step
    assert event.layer == "1" and event.value == 6 / 8 and event.step == 1
    assert all(any(c.kind == "dead_relu" for c in snap.holding) for snap in snaps)


def test_dead_relu_threshold_is_configurable():
    s, _ = run(make_spec(dead_model(3), F.cross_entropy, MOONS), 3)
    assert started(s) == set()                       # 3/8 < 0.5
    s, _ = run(make_spec(dead_model(3), F.cross_entropy, MOONS), 3, thresholds=Thresholds(dead_fraction=0.3))
    assert started(s) == {"dead_relu"}
    s, _ = run(make_spec(dead_model(6), F.cross_entropy, MOONS), 3, thresholds=Thresholds(dead_fraction=0.9))
    assert started(s) == set()


def test_saturation_fires_on_a_saturated_sigmoid_layer():
    def model(n_sat):
        cm.manual_seed(0)
        m = cm.nn.Sequential(cm.nn.Linear(2, 8), cm.nn.Sigmoid(), cm.nn.Linear(8, 2))
        m[0].weight.data *= 0.1
        m[0].bias.data[...] = [40.0, -40.0] * (n_sat // 2) + [0.0] * (8 - n_sat)
        return m
    s, snaps = run(make_spec(model(6), F.cross_entropy, MOONS, lr=0.01), 5)
    assert started(s) == {"saturation"}
    (event,) = s.warnings
    assert event.layer == "1" and event.value == 6 / 8 == snaps[0].layers[1].saturated_fraction
    s2, _ = run(make_spec(model(2), F.cross_entropy, MOONS, lr=0.01), 5)
    assert started(s2) == set()
    s3, _ = run(make_spec(model(6), F.cross_entropy, MOONS, lr=0.01), 5,
                thresholds=Thresholds(saturated_fraction=0.8))
    assert started(s3) == set()


# -- the loss -------------------------------------------------------------------------------------------

def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5))
    return X, X @ rng.normal(size=(5, 1))


def test_loss_diverging_with_a_far_too_large_learning_rate():
    cm.manual_seed(0)
    s, snaps = run(make_spec(cm.nn.Linear(5, 1), F.mse_loss, regression(), lr=2.0), 8)
    assert "loss_diverging" in started(s) and "non_finite" not in started(s)
    losses = [snap.loss for snap in snaps]
    assert all(np.isfinite(losses)) and losses[-1] > 100 * losses[0]
    event = next(e for e in s.warnings if e.kind == "loss_diverging")
    best = min(losses[:event.step])
    assert event.value == losses[event.step - 1] and event.value > 10 * best
    # the same problem with a sane learning rate: the loss falls, no warning
    cm.manual_seed(0)
    s2, snaps2 = run(make_spec(cm.nn.Linear(5, 1), F.mse_loss, regression(), lr=0.05), 8)
    assert started(s2) == set() and snaps2[-1].loss < snaps2[0].loss


def test_loss_diverging_factor_is_configurable():
    cm.manual_seed(0)
    s, _ = run(make_spec(cm.nn.Linear(5, 1), F.mse_loss, regression(), lr=2.0), 8,
               thresholds=Thresholds(diverge_factor=1e12))
    assert "loss_diverging" not in started(s)


# -- non-finite values ----------------------------------------------------------------------------------

class Log(cm.nn.Module):
    def forward(self, x):
        return x.log()


def log_model():
    cm.manual_seed(0)
    model = cm.nn.Sequential(cm.nn.Linear(1, 3), Log(), cm.nn.Linear(3, 1))
    model[0].weight.data[...] = [[1.0], [2.0], [0.5]]
    model[0].bias.data[...] = [5.0, 5.0, 5.0]
    return model


def batches():
    """Two harmless batches, then one whose x makes Linear(0) negative: log gives NaN in layer 1."""
    items = iter([np.full((4, 1), 1.0), np.full((4, 1), 2.0), np.array([[1.0], [-30.0], [2.0], [0.5]])])
    return lambda: (lambda x: (x, np.ones((4, 1))))(next(items))


@pytest.mark.parametrize("traced", [False, True])
def test_non_finite_names_the_first_forward_op_and_skips_the_update(traced):
    model = log_model()
    s = Session(make_spec(model, F.mse_loss, batches(), lr=0.01))
    s.step(2)
    s.tick()
    s.tick()
    kept = {name: p.data.copy() for name, p in model.named_parameters()}
    if traced:
        s.step_into()
    else:
        s.step(1)
    snap = s.tick()
    assert s.state == "stopped" and s.stop_info.reason == "non_finite" and s.stop_info.step == 3
    assert snap.stop.reason == "non_finite" and snap.step == 3
    (event,) = s.warnings
    assert event.kind == "non_finite" and event.op == "log" and event.layer == "1" and event.step == 3
    assert snap.warnings == (event,)
    assert "log" in s.stop_info.detail and "not applied" in s.stop_info.detail
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, kept[name])      # the NaN step changed no weight
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())
    # the trace summary of that step finds the same op first
    first = snap.trace.ops[snap.trace.first_non_finite()]
    assert first.phase == "forward" and first.op == "log" and first.scope == "1"
    assert s.tick() is None


def test_non_finite_in_the_loss_function_has_no_layer():
    cm.manual_seed(0)
    model = cm.nn.Linear(2, 1)
    model.bias.data[...] = -5.0
    model.weight.data[...] = 0.0

    def loss(pred, target):          # log of a negative number: NaN in the loss, outside any layer
        return ((pred * 1.0).log() - target).mean()

    s = Session(make_spec(model, loss, (np.ones((3, 2)), np.zeros((3, 1)))))
    s.run_to_end()
    (event,) = s.warnings
    assert event.kind == "non_finite" and event.op == "log" and event.layer is None
    assert s.stop_info.reason == "non_finite" and s.step_count == 1
    assert model.bias.data[0] == -5.0 and np.all(model.weight.data == 0.0)


# -- reporting: once at start, once when cleared ---------------------------------------------------------

def test_monitor_reports_start_once_and_clear_after_the_quiet_steps():
    t = Thresholds(clear_after=4)
    monitor = WarningMonitor(t)
    c = Condition("dead_relu", "1", 0.75, 0.5, "dead")
    events = {}
    for step in range(1, 31):
        holds = step <= 10 or step == 12          # a short lapse at 11 does not clear it
        events[step] = monitor.update(step, [c] if holds else [])
    flat = [(step, e.kind, e.event) for step, es in events.items() for e in es]
    assert flat == [(1, "dead_relu", "start"), (12 + 4, "dead_relu", "clear")]
    assert monitor.holding() == []
    assert events[16][0].message.startswith("cleared")


def test_a_warning_that_holds_is_reported_once_and_clears_when_fixed_in_the_session():
    model = dead_model(6)
    s = Session(make_spec(model, F.cross_entropy, MOONS, lr=0.01),
                config=SessionConfig(thresholds=Thresholds(clear_after=3)))
    s.step(10)
    while s.tick() is not None:
        pass
    assert [(e.kind, e.event, e.step) for e in s.warnings] == [("dead_relu", "start", 1)]
    model[0].bias.data[...] = 1.0                      # revive every unit
    s.step(10)
    snaps = []
    while (snap := s.tick()) is not None:
        snaps.append(snap)
    assert [(e.kind, e.event, e.step) for e in s.warnings] == [("dead_relu", "start", 1), ("dead_relu", "clear", 13)]
    assert snaps[2].warnings[0].event == "clear" and all(not x.warnings for i, x in enumerate(snaps) if i != 2)
    relu = next(layer for layer in snaps[2].layers if layer.name == snaps[2].warnings[0].layer)
    assert snaps[2].warnings[0].message.startswith(
        f"cleared: dead_relu on {relu.name}: the dead fraction is now {relu.dead_fraction:.3g} against the limit 0.5")
    assert all(any(c.kind == "dead_relu" for c in x.holding) for x in snaps[:2])
    assert all(not x.holding for x in snaps[2:])


def test_kinds_are_the_documented_eight():
    assert set(KINDS) == {"vanishing_gradient", "exploding_gradient", "dead_relu", "saturation",
                          "non_finite", "loss_diverging", "lr_too_large", "batch_noise"}


# -- the session's quick look at the numbers -----------------------------------------------------------

LAYER_KINDS = ("vanishing_gradient", "exploding_gradient", "dead_relu", "saturation")


@settings(max_examples=25, deadline=None)
@given(act=st.sampled_from([cm.nn.ReLU, cm.nn.Sigmoid, cm.nn.Tanh]), depth=st.integers(2, 6),
       gain=st.sampled_from([0.05, 0.5, 1.0, 3.0]), bias=st.sampled_from([0.0, -1.0]), seed=st.integers(0, 3),
       vanishing=st.sampled_from([1e-3, 0.3, 0.9]), exploding=st.sampled_from([1.1, 3.0, 1e3]),
       norm=st.sampled_from([0.05, 1.0, 1e3]), dead=st.sampled_from([0.1, 0.5, 1.0]),
       saturated=st.sampled_from([0.1, 0.5]))
def test_the_session_warns_exactly_when_the_full_checks_find_a_condition(
        act, depth, gain, bias, seed, vanishing, exploding, norm, dead, saturated):
    """The session measures every step but builds its statistics and runs the full checks only
    when a quick look at the numbers finds one over a threshold. With clear_after=1 the
    conditions holding after a step are exactly that step's: they must be what the full checks
    find on the step's statistics, at every step, whether the quick look skipped them or not."""
    cm.manual_seed(seed)
    layers = [cm.nn.Linear(2, 12), act()]
    for _ in range(depth - 2):
        layers += [cm.nn.Linear(12, 12), act()]
    model = cm.nn.Sequential(*layers, cm.nn.Linear(12, 2))
    for m in model:
        if isinstance(m, cm.nn.Linear):
            m.weight.data *= gain
            m.bias.data[:] = bias
    t = Thresholds(vanishing_ratio=vanishing, exploding_ratio=exploding, exploding_norm=norm,
                   dead_fraction=dead, saturated_fraction=saturated, clear_after=1)
    s = Session(make_spec(model, F.cross_entropy, MOONS, lr=0.5), config=SessionConfig(thresholds=t),
                max_steps=6)
    s.run()
    while not s.done:
        snap = s.tick()
        built = tuple(snap.layers)
        full = {(c.kind, c.layer) for c in gradient_conditions(built, t) + activation_conditions(built, t)}
        holding = {(c.kind, c.layer) for c in snap.holding if c.kind in LAYER_KINDS}
        assert holding == full, f"step {snap.step}"


def test_a_clear_says_what_changed_not_the_start_again():
    monitor = WarningMonitor(Thresholds(clear_after=2))
    c = Condition("dead_relu", "1", 0.6, 0.5, "1 (ReLU): 60% of ReLU units output 0 ...")
    assert [e.event for e in monitor.update(1, [c])] == ["start"]
    assert monitor.update(2, [], lambda c: ("the dead fraction", 0.1, 0.5)) == []
    (clear,) = monitor.update(3, [], lambda c: ("the dead fraction", 0.125, 0.5))
    assert clear.event == "clear" and clear.value == 0.125 and clear.threshold == 0.5
    assert clear.message == ("cleared: dead_relu on 1: the dead fraction is now 0.125 against the limit 0.5 "
                             "(it was 0.6 when it last held)")
    monitor.update(4, [c])
    monitor.update(5, [])
    (quiet,) = monitor.update(6, [], lambda c: None)      # nothing to say of it now
    assert quiet.message == "cleared: dead_relu on 1 has not held for 2 steps in a row (it was 0.6 against 0.5)"


def test_lr_too_large_clears_saying_the_lr_and_the_edge_now():
    from pathlib import Path
    from calcml.debug import load_model_file
    spec = load_model_file(str(Path(__file__).resolve().parents[1] / "sample_models" / "lr_edge.py"))
    s = Session(spec, SessionConfig(curvature_every=5), max_steps=20)
    s.step(2)
    for _ in range(2):
        s.tick()
    assert any(w.kind == "lr_too_large" for w in s.warnings)
    s.set_lr(s.lr / 4)
    s.step(10)
    for _ in range(10):
        s.tick()
    clear = next(w for w in s.warnings if w.kind == "lr_too_large" and w.event == "clear")
    edge = s.curvature.lr_edge * s.config.thresholds.lr_edge_factor
    assert clear.message.startswith(f"cleared: lr_too_large: the learning rate is now {s.lr:.3g} "
                                    f"against the limit {edge:.3g}"), clear.message
    assert clear.value == s.lr and clear.value < clear.threshold
