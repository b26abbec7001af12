"""Activations a PyTorch model applies as functions (F.relu, torch.tanh, x.softmax(-1), ...) are
layers of their own, measured as the same activation written as a module is; softmax layers
(module or function, in either framework) have their own, row-wise, saturation."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import calcml as cm                                      # noqa: E402
from calcml.debug import Session, SessionConfig, probes  # noqa: E402
from calcml.debug.torch_backend import TorchBackend      # noqa: E402
from helpers import activation_layer_in_both, make_spec  # noqa: E402

D = torch.float64
MODULES = (torch.nn.ReLU(), torch.nn.LeakyReLU(0.2), torch.nn.Tanh(), torch.nn.Sigmoid(), torch.nn.GELU(),
           torch.nn.SiLU(), torch.nn.Softsign())
FUNCTIONS = (F.relu, lambda h: F.leaky_relu(h, 0.2), torch.tanh, lambda h: h.sigmoid(), F.gelu, F.silu, F.softsign)


class Stack(torch.nn.Module):
    """Linear layers with an activation after each but the last: modules, or functions."""

    def __init__(self, acts, width=6):
        super().__init__()
        self.lins = torch.nn.ModuleList(torch.nn.Linear(width if i else 3, width, dtype=D) for i in range(len(acts)))
        self.head = torch.nn.Linear(width, 1, dtype=D)
        self.acts = acts

    def forward(self, x):
        for lin, act in zip(self.lins, self.acts):
            x = act(lin(x))
        return self.head(x)


def run(model, steps=3, **config):
    torch.manual_seed(1)
    X = np.random.default_rng(2).normal(size=(16, 3))
    y = np.sin(X[:, :1])
    spec = make_spec(model, F.mse_loss, (X, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.1), steps=steps)
    session = Session(spec, SessionConfig(curvature_every=0, **config))
    return session, session.run_to_end()


def test_functional_activations_give_the_numbers_of_the_same_activations_as_modules():
    torch.manual_seed(0)
    with_modules = Stack(torch.nn.ModuleList(MODULES))
    with_functions = Stack(FUNCTIONS)
    with_functions.load_state_dict(with_modules.state_dict())
    _, a = run(with_modules)
    _, b = run(with_functions)
    acts_a = [layer for layer in a.layers if layer.activation is not None]
    acts_b = [layer for layer in b.layers if layer.activation is not None]
    assert [layer.activation for layer in acts_b] == [layer.activation for layer in acts_a] == [
        "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "softsign"]
    assert [layer.name for layer in acts_b] == [
        "relu()", "leaky_relu()", "tanh()", "sigmoid()", "gelu()", "silu()", "softsign()"]
    assert [layer.type for layer in acts_b][:2] == ["F.relu", "F.leaky_relu"]
    for la, lb in zip(acts_a, acts_b):
        for field in ("mean_local_derivative", "dead_fraction", "saturated_fraction", "grad_in_norm", "grad_out_norm"):
            x, y = getattr(la, field), getattr(lb, field)
            assert (x is None and y is None) or x == pytest.approx(y, rel=1e-12, abs=1e-300), (lb.name, field)
    # layers are in the order they ran (here not the order the modules were defined in), and
    # each functional one right after the Linear that feeds it
    assert [layer.name for layer in a.layers][:4] == ["lins.0", "acts.0", "lins.1", "acts.1"]
    names = [layer.name for layer in b.layers]
    assert names == ["lins.0", "relu()", "lins.1", "leaky_relu()", "lins.2", "tanh()", "lins.3", "sigmoid()",
                     "lins.4", "gelu()", "lins.5", "silu()", "lins.6", "softsign()", "head"]


def test_a_functional_relus_statistics_are_its_inputs_as_computed_by_hand():
    """Against the pre-activation computed again by hand: ReLU′ is 1 where z > 0, and the
    gradient arriving at its output is autograd's."""
    torch.manual_seed(0)
    model = Stack((F.relu,), width=5)
    X, y = torch.randn(8, 3, dtype=D), torch.randn(8, 1, dtype=D)
    backend = TorchBackend(model, F.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1))
    record = backend.step((X, y))
    z = model.lins[0](X)
    h = F.relu(z)
    h.retain_grad()
    z.retain_grad()
    F.mse_loss(model.head(h), y).backward()
    c = record.captures["relu()"]
    assert np.array_equal(c.x, z.detach().numpy()) and np.array_equal(c.out, h.detach().numpy())
    assert np.allclose(c.grad_out, h.grad.numpy(), rtol=1e-13) and np.allclose(c.grad_x, z.grad.numpy(), rtol=1e-13)
    mean, dead, _ = probes.activation_stats("relu", None, c.out, 0.01)
    assert mean == pytest.approx(float((z > 0).double().mean()), rel=1e-15)
    assert dead == pytest.approx(float((z <= 0).all(dim=0).double().mean()), rel=1e-15)


class Block(torch.nn.Module):
    """A residual block: relu(lin2(relu(lin1(x))) + x), with an nn.ReLU inside too."""

    def __init__(self):
        super().__init__()
        self.lin1, self.lin2 = torch.nn.Linear(4, 4, dtype=D), torch.nn.Linear(4, 4, dtype=D)
        self.act = torch.nn.ReLU()

    def forward(self, x):
        h = self.lin2(self.act(self.lin1(x)))
        h += x
        return F.relu(h, inplace=True)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(3, 4, dtype=D)
        self.block = Block()
        self.head = torch.nn.Linear(4, 1, dtype=D)

    def forward(self, x):
        h = self.block(torch.tanh(self.inp(x)))
        return self.head(torch.tanh(h))


def test_sites_are_named_by_the_module_that_calls_them_and_in_place_ones_see_their_input():
    torch.manual_seed(0)
    model = Net()
    X, y = torch.randn(6, 3, dtype=D), torch.randn(6, 1, dtype=D)
    backend = TorchBackend(model, F.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1))
    before = backend.layers()
    record = backend.step((X, y))
    assert [(i.name, i.type) for i in backend.layers()] == [
        ("inp", "Linear"), ("tanh()", "F.tanh"), ("block.lin1", "Linear"), ("block.act", "ReLU"),
        ("block.lin2", "Linear"), ("block.relu()", "F.relu"), ("tanh()#2", "F.tanh"), ("head", "Linear")]
    assert backend.layers() is not before          # a new list: the session lays its plan out again
    # the in-place relu's input is h + x, as it was before relu overwrote it
    t = torch.tanh(model.inp(X))
    pre = model.block.lin2(model.block.act(model.block.lin1(t))) + t
    pre.retain_grad()
    out = torch.relu(pre)
    out.retain_grad()
    F.mse_loss(model.head(torch.tanh(out)), y).backward()
    c = record.captures["block.relu()"]
    assert np.allclose(c.x, pre.detach().numpy(), rtol=1e-13) and np.allclose(c.out, out.detach().numpy(), rtol=1e-13)
    assert np.allclose(c.grad_out, out.grad.numpy(), rtol=1e-12)
    assert np.allclose(c.grad_x, pre.grad.numpy(), rtol=1e-12)
    assert set(backend.step((X, y)).captures) == {i.name for i in backend.layers()}   # and every step after


def test_a_model_of_activation_modules_keeps_its_layers_and_no_function_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4, dtype=D), torch.nn.ReLU(), torch.nn.Linear(4, 1, dtype=D))
    backend = TorchBackend(model, F.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1))
    before = backend.layers()
    X, y = torch.randn(4, 3, dtype=D), torch.randn(4, 1, dtype=D)
    backend.step((X, y))
    assert backend.layers() is before and backend._functional.sites == {}
    modes = []
    real = backend._functional.__class__.__enter__
    backend._functional.__class__.__enter__ = lambda self: modes.append(1) or real(self)
    try:
        backend.step((X, y))
    finally:
        backend._functional.__class__.__enter__ = real
    assert modes == []


def test_a_session_shows_functional_layers_from_its_first_step_with_their_warnings():
    """A sigmoid applied as a function to pre-activations far from 0 saturates: the saturation
    warning names the functional layer, as it would the module."""
    torch.manual_seed(0)
    model = Stack((lambda h: torch.sigmoid(h + 30),))
    session, snapshot = run(model, steps=2)
    assert [layer.name for layer in session.layer_info] == ["lins.0", "sigmoid()", "head"]
    assert [layer.name for layer in snapshot.layers] == ["lins.0", "sigmoid()", "head"]
    assert any(w.kind == "saturation" and w.layer == "sigmoid()" for w in session.warnings)
    assert "sigmoid() (F.sigmoid)" in next(w.message for w in session.warnings if w.kind == "saturation")


# -- softmax --------------------------------------------------------------------------------
def test_softmax_statistics_are_row_wise_as_computed_by_hand():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 5)) * np.array([[0.1], [1], [3], [30], [60], [1], [100]])
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    mean, dead, saturated = probes.activation_stats("softmax", torch.nn.Softmax(dim=1), p, 0.01)
    assert dead is None
    assert mean == pytest.approx(float(np.mean(p * (1 - p))), rel=1e-15)
    assert saturated == pytest.approx(np.mean(p.max(axis=1) > 0.99), rel=1e-15) and 0 < saturated < 1
    # along another axis: its rows are the columns
    _, _, by_columns = probes.activation_stats("softmax", torch.nn.Softmax(dim=0), p.T, 0.01)
    assert by_columns == saturated
    # and a row spread evenly over many entries is not saturated, though each p(1 − p) is tiny
    _, _, even = probes.activation_stats("softmax", None, np.full((3, 1000), 1e-3), 0.01)
    assert even == 0


def test_a_softmax_module_gives_the_same_numbers_in_both_frameworks():
    a, b = activation_layer_in_both(cm.nn.Softmax(dim=-1), torch.nn.Softmax(dim=-1))
    assert a.activation == b.activation == "softmax"
    for field in ("mean_local_derivative", "saturated_fraction", "grad_in_norm", "grad_out_norm"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-10), field
    assert a.dead_fraction is None and b.dead_fraction is None


class Attention(torch.nn.Module):
    """One attention head written out, with a temperature that sharpens its softmax."""

    def __init__(self, scale):
        super().__init__()
        self.q, self.k, self.v = (torch.nn.Linear(4, 4, dtype=D) for _ in range(3))
        self.head = torch.nn.Linear(4, 1, dtype=D)
        self.scale = scale

    def forward(self, x):                      # x: (batch, tokens, 4)
        scores = self.q(x) @ self.k(x).transpose(1, 2) * self.scale
        return self.head((scores.softmax(-1) @ self.v(x)).mean(1))


def test_attention_whose_logits_saturate_the_softmax_is_warned_about():
    X = np.random.default_rng(3).normal(size=(12, 6, 4))
    y = X[:, :, :1].mean(1)
    for scale, warned in ((0.5, False), (400.0, True)):
        torch.manual_seed(0)
        model = Attention(scale)
        spec = make_spec(model, F.mse_loss, (X, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.01), steps=2)
        session = Session(spec, SessionConfig(curvature_every=0))
        snapshot = session.run_to_end()
        softmax = next(layer for layer in snapshot.layers if layer.name == "softmax()")
        assert softmax.activation == "softmax" and softmax.type == "F.softmax"
        events = [w for w in session.warnings if w.kind == "saturation" and w.layer == "softmax()"]
        assert bool(events) == warned, (scale, softmax.saturated_fraction)
        if warned:
            assert "of softmax rows put over 99% of their weight on one entry" in events[0].message
            assert softmax.saturated_fraction > 0.5
            assert math.isfinite(softmax.mean_local_derivative)


def test_a_functional_elu_gives_the_numbers_of_the_elu_module_with_its_alpha():
    torch.manual_seed(0)
    with_modules = Stack(torch.nn.ModuleList([torch.nn.ELU(alpha=0.5), torch.nn.ELU()]))
    with_functions = Stack((lambda h: F.elu(h, 0.5), lambda h: F.elu(h, alpha=1.0)))
    with_functions.load_state_dict(with_modules.state_dict())
    _, a = run(with_modules)
    _, b = run(with_functions)
    acts_a = [layer for layer in a.layers if layer.activation is not None]
    acts_b = [layer for layer in b.layers if layer.activation is not None]
    assert [layer.activation for layer in acts_b] == [layer.activation for layer in acts_a] == ["elu", "elu"]
    assert [(layer.name, layer.type) for layer in acts_b] == [("elu()", "F.elu"), ("elu()#2", "F.elu")]
    for la, lb in zip(acts_a, acts_b):
        for field in ("mean_local_derivative", "saturated_fraction", "grad_in_norm", "grad_out_norm"):
            x, y = getattr(la, field), getattr(lb, field)
            assert (x is None and y is None) or x == pytest.approx(y, rel=1e-12, abs=1e-300), (lb.name, field)
