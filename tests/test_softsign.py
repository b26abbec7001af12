"""Softsign, x/(1 + |x|): an activation added by its entry in the derivative table (calcml.ops) and
one module class naming it. Everything else follows from the entry: the engine's forward and
backward, nn.functional.softsign, the debugger's statistics and histograms of its local
derivative, the step-into chain-rule line and the inspector's words."""
from __future__ import annotations

import math

import numpy as np

import calcml as cm
import calcml.nn.functional as F
from calcml import ops
from calcml.debug import Session, SessionConfig, probes
from calcml.debug import snapshot as records
from calcml.tui import text_inspector as inspector
from calcml.tui.text_stepinto import backward_detail, chain_rule, forward_detail
from fd import check_grad, numeric_grad
from helpers import make_spec


def np_softsign(x):
    return x / (1.0 + np.abs(x))


def test_softsign_forward_and_gradient_by_central_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(5, 4))
    check_grad(lambda t: F.softsign(t), np_softsign, [x])
    check_grad(lambda t: cm.nn.Softsign()(t), np_softsign, [x], via="backward")
    check_grad(lambda t: F.softsign(t * 2.0 - 1.0), lambda a: np_softsign(a * 2.0 - 1.0), [x])


def test_softsign_second_derivative_by_central_differences_of_the_gradient():
    x = np.array([-3.0, -0.7, 0.4, 2.5])
    t = cm.tensor(x, requires_grad=True)
    (g,) = cm.grad(F.softsign(t).sum(), [t], create_graph=True)
    np.testing.assert_allclose(g.data, 1.0 / (1.0 + np.abs(x)) ** 2, rtol=1e-12)
    (h,) = cm.grad(g.sum(), [t])
    first = lambda a: np.sum(1.0 / (1.0 + np.abs(a)) ** 2)   # Σ softsign'(x), differenced numerically
    np.testing.assert_allclose(h.data, numeric_grad(first, [x])[0], rtol=1e-6)


def test_softsign_is_in_the_table_the_modules_and_the_functions():
    assert ops.BY_NAME["softsign"] is ops.SOFTSIGN and ops.SOFTSIGN in ops.ACTIVATION_OPS
    assert cm.nn.Softsign.op is ops.SOFTSIGN and cm.nn.Softsign in cm.nn.ACTIVATIONS
    assert "Softsign" in cm.nn.__all__ and repr(cm.nn.Softsign()) == "Softsign()"
    assert probes.ACTIVATIONS[cm.nn.Softsign] == "softsign" == probes.activation_kind(cm.nn.Softsign())
    assert probes.MAX_DERIVATIVE["softsign"] == 1.0
    x = cm.tensor(np.linspace(-4, 4, 9), dtype=np.float32)
    assert F.softsign(x).dtype == np.float32
    np.testing.assert_allclose(F.softsign(x).data, np_softsign(x.data), rtol=1e-6)


def test_softsign_statistics_are_its_derivative():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=3.0, size=(40, 5))
    z[:, 0] = 500.0                     # a saturated unit: (1/501)² is below 1% of the maximum 1
    out = np_softsign(z)
    d = (1.0 - np.abs(out)) ** 2
    mean, dead, saturated = probes.activation_stats("softsign", cm.nn.Softsign(), out, 0.01)
    assert math.isclose(mean, float(d.mean()), rel_tol=1e-12) and dead is None
    assert saturated == float(np.mean(np.all(d < 0.01, axis=0))) and saturated >= 1 / 5
    np.testing.assert_allclose(probes.local_derivative("softsign", cm.nn.Softsign(), out), d, rtol=1e-12)


def _model(seed=0):
    cm.manual_seed(seed)
    return cm.nn.Sequential(cm.nn.Linear(3, 6), cm.nn.Softsign(), cm.nn.Linear(6, 1))


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(24, 3)), rng.normal(size=(24, 1))


def test_a_session_measures_a_softsign_layers_mean_local_derivative():
    model = _model()
    X, y = _data()
    s = Session(make_spec(model, F.mse_loss, (X, y), lr=0.1), SessionConfig(histogram_every=1))
    for _ in range(4):
        W, b = model[0].weight.data.copy(), model[0].bias.data.copy()   # the weights this step runs with
        s.step(1)
        snap = s.tick()
        out = np_softsign(X @ W.T + b)           # the layer's output, computed here independently
        d = (1.0 - np.abs(out)) ** 2             # softsign'(z) = 1/(1 + |z|)² = (1 − |softsign(z)|)²
        layer = snap.layers[1]
        assert layer.type == "Softsign" and layer.activation == "softsign"
        assert math.isclose(layer.mean_local_derivative, float(d.mean()), rel_tol=1e-9)
        assert layer.dead_fraction is None
        assert layer.saturated_fraction == float(np.mean(np.all(d < 0.01, axis=0)))
        counts, edges = snap.histograms["1.deriv_hist"]
        ref_counts, ref_edges = probes.histogram(d, len(counts))
        np.testing.assert_allclose(edges, ref_edges, rtol=1e-9)
        assert counts.sum() == d.size and np.abs(counts - ref_counts).sum() <= 2   # an edge value may move
    assert snap.step == 4


def test_step_into_writes_out_softsigns_chain_rule():
    s = Session(make_spec(_model(), F.mse_loss, _data(), lr=0.1))
    s.step_into()
    snap = s.tick()
    forward = next(o for o in snap.trace.ops if o.phase == "forward" and o.op == "softsign")
    backward = next(o for o in snap.trace.ops if o.phase == "backward" and o.op == "softsign")
    assert forward.module_type == "Softsign" and forward.formulas == ("d softsign(z)/dz = 1/(1 + |z|)^2",)
    rule, lines = chain_rule(backward)
    x = backward.inputs[0]
    assert rule == "gradient passed on = upstream × local factor (entry by entry)"
    assert lines == [f"dL/d{x} = dL/dt{backward.id} × (1/(1 + |{x}|)^2)"]
    assert backward.factors[0] is not None and 0 < backward.factors[0].max <= 1
    text = "\n".join(str(part) for part in backward_detail(backward).renderables)
    assert "1/(1 + |z|)^2" in text
    assert "1/(1 + |z|)^2" in str(forward_detail(forward, {}).renderables[2])


def test_the_inspector_names_softsigns_derivative_and_factor():
    assert inspector.DERIVATIVE_NAMES["softsign"] == "softsign'(z) = 1/(1 + |z|)², at most 1"
    assert inspector.FACTOR_NOTES["Softsign"] == "(1 − |softsign(z)|)² ≤ 1"
    layer = records.LayerStats("1", "Softsign", activation="softsign", mean_local_derivative=0.4)
    assert inspector.factor_note(layer).startswith("(1 − |softsign(z)|)² ≤ 1, mean 0.4")
