"""One derivative table (calcml.ops): every fact about a primitive's derivative is read from its
entry. The debugger's activation statistics are the op's own partial, the step-into chain-rule
lines and the inspector's notes are the entry's words, and an activation module or function is
made from its op; for every activation of the table, whichever it is."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml import ops
from calcml.debug import probes
from calcml.debug import snapshot as records
from calcml.debug.tracesummary import ArrayStats, OpSummary
from calcml.tui import text_inspector as inspector
from calcml.tui.text_stepinto import chain_rule
from fd import check_grad

ACTIVATION_OPS = ops.ACTIVATION_OPS
MODULES = {cls.op.name: cls for cls in cm.nn.ACTIVATIONS if getattr(cls, "op", None) is not None}


def _ids(op):
    return op.name


# -- what the debugger reads is the table's -------------------------------------------------------

def test_the_four_activations_keep_their_kinds_numbers_and_words():
    """What snapshots, reports and tests have always said, now read from the table."""
    assert probes.ACTIVATIONS[cm.nn.ReLU] == "relu" and probes.ACTIVATIONS[cm.nn.LeakyReLU] == "leaky_relu"
    assert probes.ACTIVATIONS[cm.nn.Sigmoid] == "sigmoid" and probes.ACTIVATIONS[cm.nn.Tanh] == "tanh"
    assert cm.nn.Linear not in probes.ACTIVATIONS
    assert probes.ACTIVATIONS[cm.nn.Softmax] == "softmax" and "softmax" not in probes.MAX_DERIVATIVE   # row-wise
    assert {k: probes.MAX_DERIVATIVE[k] for k in ("relu", "leaky_relu", "sigmoid", "tanh")} == {
        "relu": 1.0, "leaky_relu": 1.0, "sigmoid": 0.25, "tanh": 1.0}
    assert {k: inspector.FACTOR_NOTES[k] for k in ("Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Linear")} == {
        "Sigmoid": "σ'(z) ≤ 1/4", "Tanh": "1 − tanh²(z) ≤ 1", "ReLU": "0 or 1", "LeakyReLU": "1 or α",
        "Linear": "Wᵀ"}
    assert {k: inspector.DERIVATIVE_NAMES[k] for k in ("sigmoid", "tanh", "relu", "leaky_relu")} == {
        "sigmoid": "σ'(z) = σ(1 − σ), at most 1/4", "tanh": "1 − tanh²(z), at most 1",
        "relu": "ReLU'(z): 0 or 1", "leaky_relu": "LeakyReLU'(z): α or 1"}
    assert "BayesLinear" not in inspector.FACTOR_NOTES   # a layer naming no op keeps the general note


def test_every_activation_of_the_table_is_everywhere_the_debugger_looks():
    assert [op.name for op in ACTIVATION_OPS][:4] == ["tanh", "sigmoid", "relu", "leaky_relu"]
    for op in ACTIVATION_OPS:
        module = MODULES[op.name]
        assert module.op is op and getattr(cm.nn, module.__name__) is module
        assert probes.ACTIVATIONS[module] == op.name and probes.activation_kind(module()) == op.name
        assert probes.MAX_DERIVATIVE[op.name] == op.activation.max_derivative
        assert inspector.FACTOR_NOTES[module.__name__] == op.note and op.note
        assert inspector.DERIVATIVE_NAMES[op.name] == op.activation.derivative
        assert callable(getattr(F, op.name)) and op in ops.PRIMITIVES and ops.BY_NAME[op.name] is op
    assert probes.activation_kind(cm.nn.Linear(2, 2)) is None and probes.activation_kind(cm.nn.Softmax()) is None
    assert probes.activation_kind(object()) is None


def test_a_module_names_its_op_and_a_layer_type_its_note():
    assert cm.nn.Linear.op is ops.LINEAR and inspector.FACTOR_NOTES["Linear"] == ops.LINEAR.note
    layer = records.LayerStats("1", "ReLU", activation="relu", mean_local_derivative=0.5)
    assert inspector.factor_note(layer).startswith("0 or 1, mean 0.5")
    assert inspector.factor_note(records.LayerStats("2", "BayesLinear")) == "∂out/∂in"


# -- modules and functions made from the entry ------------------------------------------------------

def test_activation_modules_take_their_ops_parameters():
    assert cm.nn.LeakyReLU().negative_slope == 0.01
    assert cm.nn.LeakyReLU(0.2).negative_slope == 0.2 == cm.nn.LeakyReLU(negative_slope=0.2).negative_slope
    assert repr(cm.nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)" and repr(cm.nn.ReLU()) == "ReLU()"
    assert str(inspect.signature(cm.nn.LeakyReLU)) == "(negative_slope=0.01)"
    assert str(inspect.signature(F.leaky_relu)) == "(input, negative_slope=0.01)"
    with pytest.raises(TypeError, match="ReLU"):
        cm.nn.ReLU(0.1)
    with pytest.raises(TypeError, match="LeakyReLU"):
        cm.nn.LeakyReLU(slope=0.1)
    with pytest.raises(TypeError, match="leaky_relu"):
        F.leaky_relu(cm.tensor([1.0]), 0.1, 0.2)
    with pytest.raises(TypeError, match="base class"):
        cm.nn.Activation()
    with pytest.raises(TypeError, match="activation"):
        type("Bad", (cm.nn.Activation,), {"op": ops.ADD})


@pytest.mark.parametrize("op", ACTIVATION_OPS, ids=_ids)
def test_module_function_and_op_compute_the_same(op):
    z = np.random.default_rng(0).normal(scale=2.0, size=(5, 4))
    attrs = tuple(default for _, default in op.activation.params)
    expected = op.forward(z, *attrs)
    np.testing.assert_array_equal(MODULES[op.name]()(cm.tensor(z)).data, expected)
    np.testing.assert_array_equal(getattr(F, op.name)(cm.tensor(z)).data, expected)
    x = cm.tensor(z, requires_grad=True)
    y = getattr(F, op.name)(x)
    assert y.op == op.name
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, op.partials[0](z, expected, *attrs))


@pytest.mark.parametrize("op", ACTIVATION_OPS, ids=_ids)
def test_every_activation_has_the_gradient_of_central_differences(op):
    rng = np.random.default_rng(1)
    z = rng.choice([-1.0, 1.0], (6, 3)) * rng.uniform(0.1, 2.0, (6, 3))   # away from kinks at 0
    check_grad(lambda t: getattr(F, op.name)(t), lambda a: op.forward(a, *(d for _, d in op.activation.params)), [z])


@pytest.mark.parametrize("op", ACTIVATION_OPS, ids=_ids)
def test_float32_stays_float32(op):
    x = cm.tensor(np.linspace(-2, 2, 7), dtype=np.float32, requires_grad=True)
    y = getattr(F, op.name)(x)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


# -- leaky_relu, now an op of its own -----------------------------------------------------------------

@pytest.mark.parametrize("slope", [0.01, 0.2, -0.5, 2.0])
def test_leaky_relu_module_matches_the_composite_exactly(slope):
    z = np.random.default_rng(2).normal(size=(8, 5))
    z[0, :2] = 0.0
    a, b = cm.tensor(z, requires_grad=True), cm.tensor(z, requires_grad=True)
    out_a, out_b = cm.nn.LeakyReLU(slope)(a), cm.leaky_relu(b, slope)   # the op, and where/mul
    np.testing.assert_array_equal(out_a.data, out_b.data)
    weights = np.random.default_rng(3).normal(size=z.shape)
    (out_a * weights).sum().backward()
    (out_b * weights).sum().backward()
    np.testing.assert_array_equal(a.grad, b.grad)
    check_grad(lambda t: F.leaky_relu(t, slope), lambda x: np.where(x > 0, x, slope * x),
               [np.where(np.abs(z) < 0.1, 0.5, z)])


def test_leaky_relu_second_derivative_is_zero_away_from_the_kink():
    x = cm.tensor(np.array([-1.5, -0.3, 0.4, 2.0]), requires_grad=True)
    y = (cm.nn.LeakyReLU(0.2)(x) ** 2).sum()
    (g,) = cm.grad(y, [x], create_graph=True)
    np.testing.assert_allclose(g.data, 2 * np.where(x.data > 0, 1.0, 0.04) * x.data)
    (h,) = cm.grad(g.sum(), [x])
    np.testing.assert_allclose(h.data, 2 * np.where(x.data > 0, 1.0, 0.04))


# -- the debugger's statistics are the op's partial ------------------------------------------------------

@pytest.mark.parametrize("op", ACTIVATION_OPS, ids=_ids)
def test_activation_statistics_are_the_ops_own_derivative(op):
    rng = np.random.default_rng(4)
    z = rng.normal(scale=4.0, size=(32, 6))
    z[:, 0] = -50.0   # a unit below every kink and far out on every tail
    attrs = tuple(default for _, default in op.activation.params)
    out = op.forward(z, *attrs)
    d = op.partials[0](z, out, *attrs)
    mean, dead, saturated = probes.activation_stats(op.name, MODULES[op.name](), out, 0.01, x=z)
    assert math.isclose(mean, float(np.mean(d)), rel_tol=1e-12)
    np.testing.assert_array_equal(probes.local_derivative(op.name, MODULES[op.name](), out, x=z), d)
    if op.activation.dead:
        assert math.isclose(dead, float(np.mean(np.all(d == 0, axis=0)))) and dead > 0.16
    else:
        assert dead is None
    if op.activation.saturates:
        limit = 0.01 * op.activation.max_derivative
        assert saturated == float(np.mean(np.all(d < limit, axis=0))) and saturated >= 1 / 6
    else:
        assert saturated is None
    assert np.max(d) <= op.activation.max_derivative


def test_the_layer_input_gives_leaky_relu_with_a_negative_slope_its_derivative():
    z = np.array([[-2.0, 1.0], [3.0, -0.5]])
    module = cm.nn.LeakyReLU(-0.5)
    out = module(cm.tensor(z)).data                  # every output is ≥ 0: its sign cannot tell
    d = probes.local_derivative("leaky_relu", module, out, x=z)
    np.testing.assert_array_equal(d, [[-0.5, 1.0], [1.0, -0.5]])
    mean, _, _ = probes.activation_stats("leaky_relu", module, out, 0.01, x=z)
    assert mean == 0.25


def test_statistics_are_quiet_and_keep_nan():
    out = np.array([[np.nan, 0.5], [0.2, 0.3]])
    with np.errstate(all="raise"):
        mean, _, saturated = probes.activation_stats("sigmoid", None, out, 0.01)
        d = probes.local_derivative("tanh", None, out)
    assert math.isnan(mean) and saturated == 0.0 and math.isnan(d[0, 0])


def test_statistics_are_whole_array_operations():
    """A batch of a million entries is measured in well under a second (no Python loop per entry)."""
    import time
    out = np.tanh(np.random.default_rng(5).normal(size=(1000, 1000)))
    start = time.perf_counter()
    for op in ACTIVATION_OPS:
        probes.activation_stats(op.name, MODULES[op.name](), out, 0.01)
    assert time.perf_counter() - start < 2.0


# -- the step-into chain rule is the entry's words ---------------------------------------------------------

def _stats(shape):
    return ArrayStats(tuple(shape), 0.5, 0.1, 0.0, 1.0, 0, 0)


@pytest.mark.parametrize("op", ops.PRIMITIVES, ids=_ids)
def test_every_primitive_explains_its_chain_rule(op):
    n = len(op.formulas)
    labels = [f"t{k}" for k in range(n)]
    summary = OpSummary(0, "backward", op.name, 9, "", None, tuple(labels), op.formulas, upstream=_stats((4, 3)),
                        factors=tuple(_stats((4, 3)) for _ in labels), grads=tuple(_stats((4, 3)) for _ in labels))
    rule, lines = chain_rule(summary)
    assert rule == op.rule_text and len(lines) == n
    for line, label in zip(lines, labels):
        assert line.startswith(f"dL/d{label} = ") and "{" not in line and "vector-Jacobian" not in line
    if op.elementwise:   # upstream × the formula's right-hand side
        assert rule == ops.ELEMENTWISE_RULE
        assert all(line.startswith(f"dL/d{label} = dL/dt9 × ") for line, label in zip(lines, labels))
    else:
        assert op.chain, f"{op.name} has no words of its own for its chain rule"


def test_an_op_the_table_does_not_know_is_routed_back():
    summary = OpSummary(0, "backward", "frobnicate", 9, "", None, ("t1",), ("?",), upstream=_stats((2,)),
                        factors=(None,), grads=(_stats((2,)),))
    assert chain_rule(summary) == (ops.ROUTED_RULE, ["dL/dt1 = vector-Jacobian product of dL/dt9 (see the formula)"])


def test_leaky_relu_chain_rule_line():
    summary = OpSummary(0, "backward", "leaky_relu", 9, "1", "LeakyReLU", ("t5",), ops.LEAKY_RELU.formulas,
                        upstream=_stats((4, 3)), factors=(_stats((4, 3)),), grads=(_stats((4, 3)),))
    rule, lines = chain_rule(summary)
    assert rule == "gradient passed on = upstream × local factor (entry by entry)"
    assert lines == ["dL/dt5 = dL/dt9 × (1 if t5 > 0 else α)"]
