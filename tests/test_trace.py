"""The trace: every forward op and every backward chain-rule factor of one iteration."""
import numpy as np
import pytest

import calcml as cm
from calcml import ops
from calcml.nn import functional as F


class Net(cm.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = cm.nn.Sequential(
            cm.nn.Linear(3, 5), cm.nn.Tanh(), cm.nn.Linear(5, 4), cm.nn.Sigmoid(),
            cm.nn.Linear(4, 4), cm.nn.ReLU(), cm.nn.Linear(4, 3),
        )

    def forward(self, x):
        return self.layers(x)


@pytest.fixture
def traced():
    cm.manual_seed(0)
    net = Net()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3))
    labels = rng.integers(0, 3, size=6)
    with cm.trace() as t:
        logits = net(x)
        loss = F.cross_entropy(logits, labels) + F.mse_loss(logits.softmax(), np.full((6, 3), 1 / 3))
        loss.backward()
    return net, t, loss


def test_forward_ops_are_recorded_in_order_with_scopes(traced):
    net, t, loss = traced
    assert [r.index for r in t.forward] == list(range(len(t.forward)))
    names = [r.op for r in t.forward]
    assert names[:2] == ["linear", "tanh"]                      # layers.0: x Wᵀ + b, then layers.1
    assert t.forward[1].scope == "layers.1"
    assert t.forward[0].scope == "layers.0" and t.forward[0].module_type == "Linear"
    assert t.forward[-1].output is loss
    # every input id was produced earlier or is a leaf
    produced = set()
    for r in t.forward:
        assert all(i in produced or i in t.leaves for i in r.inputs)
        produced.add(r.id)


def test_forward_values_are_references_not_copies(traced):
    net, t, loss = traced
    first = t.forward[0]
    weight_id = first.inputs[1]
    assert t.values[weight_id] is net.layers[0].weight
    assert t.value(weight_id) is net.layers[0].weight.data
    assert t.forward[-1].value is loss.data


def test_leaves_carry_parameter_names(traced):
    net, t, _ = traced
    labels = {t.label(v) for v in t.leaves}
    assert {"layers.0.weight", "layers.0.bias", "layers.6.weight"} <= labels


def test_elementwise_factor_times_upstream_is_the_gradient_passed_on(traced):
    _, t, _ = traced
    elementwise = [r for r in t.backward if r.elementwise]
    assert {"tanh", "sigmoid", "relu", "mul", "sub", "exp", "log"} <= {r.op for r in elementwise}
    checked = 0
    for r in elementwise:
        for i, (factor, sent) in enumerate(zip(r.factors, r.grads)):
            if sent is None:
                continue
            expected = ops.unbroadcast(np.asarray(factor) * r.upstream, t.value(r.inputs[i]).shape)
            np.testing.assert_allclose(sent, expected, rtol=1e-12, atol=1e-15)
            checked += 1
    assert checked >= 15


def test_activation_factors_are_the_local_derivatives(traced):
    _, t, _ = traced
    by_op = {r.op: r for r in t.backward if r.op in ("tanh", "sigmoid", "relu")}
    z = t.value(by_op["tanh"].inputs[0])
    np.testing.assert_allclose(by_op["tanh"].factors[0], 1 - np.tanh(z) ** 2)
    z = t.value(by_op["sigmoid"].inputs[0])
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(by_op["sigmoid"].factors[0], s * (1 - s))
    assert np.max(by_op["sigmoid"].factors[0]) <= 0.25
    z = t.value(by_op["relu"].inputs[0])
    np.testing.assert_array_equal(by_op["relu"].factors[0], (z > 0).astype(float))
    assert by_op["tanh"].formulas[0] == "d tanh(z)/dz = 1 - tanh(z)^2"


def test_linear_factors_are_the_weights_and_the_inputs(traced):
    net, t, _ = traced
    record = next(r for r in t.backward if r.op == "linear" and r.scope == "layers.2")
    x, w = t.value(record.inputs[0]), t.value(record.inputs[1])
    assert w is net.layers[2].weight.data
    np.testing.assert_allclose(record.factors[0], w)
    np.testing.assert_allclose(record.grads[0], record.upstream @ w)          # ∂L/∂x = g W
    np.testing.assert_allclose(record.grads[1], record.upstream.T @ x)        # ∂L/∂W = gᵀ x
    np.testing.assert_allclose(record.grads[2], record.upstream.sum(axis=0))  # ∂L/∂b = Σ g
    assert record.formulas[0] == "d(xWᵀ+b)/dx = W"


def test_matmul_factor_is_the_transposed_other_operand():
    rng = np.random.default_rng(0)
    x = cm.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = cm.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    with cm.trace() as t:
        ((x @ w).tanh()).sum().backward()
    record = next(r for r in t.backward if r.op == "matmul")
    np.testing.assert_allclose(record.factors[0], w.data.T)
    np.testing.assert_allclose(record.grads[0], record.upstream @ w.data.T)
    np.testing.assert_allclose(record.factors[1], x.data.T)
    np.testing.assert_allclose(record.grads[1], x.data.T @ record.upstream)
    assert record.formulas[0] == "d(x@W)/dx = W^T"


def test_backward_gradients_reaching_parameters_match_grad(traced):
    net, t, _ = traced
    w = net.layers[4].weight
    sent = [r.grads[i] for r in t.backward for i, v in enumerate(r.inputs) if t.values[v] is w]
    assert len(sent) == 1
    np.testing.assert_allclose(sent[0], w.grad)


def test_iteration_is_forward_then_backward(traced):
    _, t, _ = traced
    kinds = [e.kind for e in t]
    assert kinds == ["forward"] * len(t.forward) + ["backward"] * len(t.backward)
    assert len(t) == len(kinds)
    # backward runs from the loss down: the first backward op is the last forward op
    assert t.backward[0].id == t.forward[-1].id


def test_every_op_in_the_graph_is_visited_once_in_backward(traced):
    _, t, _ = traced
    ids = [r.id for r in t.backward]
    assert len(ids) == len(set(ids))
    forward_ids = {r.id for r in t.forward}
    assert set(ids) <= forward_ids


def test_tracing_is_off_by_default_and_ends_with_the_block():
    from calcml import tracing as trace_module
    assert trace_module.active is None
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    with cm.trace() as t:
        (x * 2).sum().backward()
    n = len(t)
    (x * 3).sum().backward()
    assert len(t) == n
    assert trace_module.active is None


def test_double_backward_ops_are_not_recorded_as_forward_ops():
    x = cm.tensor([0.3, -0.2], requires_grad=True)
    with cm.trace() as t:
        y = x.tanh().sum()
        (g,) = cm.grad(y, [x], create_graph=True)
    assert [r.op for r in t.forward] == ["tanh", "sum"]
    assert [r.op for r in t.backward] == ["sum", "tanh"]
    np.testing.assert_allclose(g.data, 1 - np.tanh(x.data) ** 2)
