"""A layer whose input also goes elsewhere (a fork: a residual block's first layer, q/k/v reading
one x): the debugger measures the gradient through the layer (its own share, `Capture.grad_x`)
and over every path (`grad_x_total`), and the inspector's chain joins the other paths there.

The shares are checked against float64 central finite differences of the loss with the layer's
input perturbed alone (the share) or the block's input perturbed (the whole); the PyTorch backend
against the calcml backend on the same net with copied weights, and against torch's own autograd.
"""
from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

import calcml as cm
from calcml import nn
from calcml.debug import Session, load_model_file
from calcml.debug.calcml_backend import CalcmlBackend
from calcml.tui.text_inspector import chain_links, chain_summary
from fd import numeric_grad

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
WIDTH, BLOCKS, BATCH = 3, 2, 4


class Block(nn.Module):
    """h + fc2(tanh(fc1(h))). For the finite differences, `read` replaces what fc1 reads (the
    shortcut still adds the real h) and `given` replaces the block's input (both paths)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH)
        self.read = self.given = None

    def forward(self, h):
        if self.given is not None:
            h = cm.tensor(self.given)
        x = h if self.read is None else cm.tensor(self.read)
        return h + self.fc2(self.act(self.fc1(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(2, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.out = nn.Linear(WIDTH, 1)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


def problem(seed=0):
    cm.manual_seed(seed)
    net = Net()
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(BATCH, 2)), rng.normal(size=(BATCH, 1))
    return net, (cm.tensor(X), cm.tensor(y))


def backend_of(net):
    return CalcmlBackend(net, nn.functional.mse_loss, cm.optim.SGD(net.parameters(), lr=0.1))


def loss_value(net, batch) -> float:
    with cm.no_grad():
        return float(nn.functional.mse_loss(net(batch[0]), batch[1]).data)


def loss_with(net, batch, block, what: str, value) -> float:
    """The loss with block.`what` ('read': what fc1 reads; 'given': the block's input) set to value."""
    setattr(block, what, value)
    try:
        return loss_value(net, batch)
    finally:
        setattr(block, what, None)


def test_a_forks_own_share_and_its_whole_gradient_are_the_finite_differences_of_the_loss():
    net, batch = problem()
    record = backend_of(net).step(batch)
    forks = {name for name, c in record.captures.items() if c.grad_x_total is not None}
    assert forks == {f"blocks.{b}.fc1" for b in range(BLOCKS)}   # the shortcut reads their input too
    for b, block in enumerate(net.blocks):
        c = record.captures[f"blocks.{b}.fc1"]

        own, = numeric_grad(lambda u: loss_with(net, batch, block, "read", u), [c.x])
        whole, = numeric_grad(lambda h: loss_with(net, batch, block, "given", h), [c.x])
        np.testing.assert_allclose(c.grad_x, own, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(c.grad_x_total, whole, rtol=1e-6, atol=1e-9)
        assert np.linalg.norm(whole - own) > 0.1 * np.linalg.norm(whole)   # the shortcut's share is not small
    # a layer that reads its input alone: its ‖∂L/∂in‖ is the whole, and no second number
    for name in ("blocks.0.act", "blocks.0.fc2", "out"):
        assert record.captures[name].grad_x_total is None and record.captures[name].grad_x is not None


def test_the_chain_with_its_joins_multiplies_to_the_gradient_measured_at_each_layer():
    spec = load_model_file(str(SAMPLES / "residual_mlp.py"))
    spec.steps = 3
    final = Session(spec).run_to_end()
    layers = {layer.name: layer for layer in final.layers}
    forks = [name for name, layer in layers.items() if layer.grad_in_total_norm is not None]
    assert forks == [f"blocks.{b}.fc1" for b in range(8)]
    links = chain_links(final.layers, "blocks.0.fc1")
    joins = [link for link in links if link.type == "join"]
    assert [link.layer for link in joins] == [f"blocks.{b}.fc1" for b in range(7, 0, -1)]
    for before, link in zip(links, links[1:]):
        if link.type == "join":
            fork = layers[link.layer]
            assert before.layer == link.layer and before.product == pytest.approx(fork.grad_in_norm, rel=1e-12)
            assert before.product * link.factor == pytest.approx(link.product, rel=1e-12)
            assert link.product == fork.grad_in_total_norm and link.factor > 1.5
    # the product reaching blocks.0.fc1 is its ‖∂L/∂out‖ as measured: the model is a chain again
    assert links[-2].product == pytest.approx(layers["blocks.0.fc1"].grad_out_norm, rel=1e-10)
    words = " ".join(chain_summary(links, layers["blocks.0.fc1"]).plain.split())
    assert "not a single chain" not in words and "and 7 joins took the gradient" in words
    assert "the other paths into its input bring that to" in words


def test_a_traced_step_leaves_the_model_its_own_ops_and_says_a_forks_share_is_unmeasured():
    net, batch = problem()
    backend = backend_of(net)
    first = backend.step(batch, traced=True)        # before any untraced step: no fork known yet
    assert all(c.grad_x_total is None for c in first.captures.values())
    untraced = backend.step(batch)                  # finds the forks (no update: the same weights)
    traced = backend.step(batch, traced=True)
    assert "branch" not in {op.op for op in traced.trace.ops}
    for b in range(BLOCKS):
        name = f"blocks.{b}.fc1"
        assert traced.captures[name].grad_x is None
        np.testing.assert_array_equal(traced.captures[name].grad_x_total, untraced.captures[name].grad_x_total)
        np.testing.assert_array_equal(first.captures[name].grad_x, untraced.captures[name].grad_x_total)


def test_a_chain_has_no_forks_and_later_steps_branch_nothing():
    cm.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    backend = backend_of(net)
    batch = (cm.tensor(np.ones((4, 2))), cm.tensor(np.zeros((4, 1))))
    for _ in range(2):
        record = backend.step(batch)
        assert all(c.grad_x_total is None for c in record.captures.values())
    assert backend._recorder.forks == set() and not backend._recorder._branching


# -- PyTorch --------------------------------------------------------------------------------------

def torch_twin(torch, net, in_place: bool):
    """The same residual net in torch, float64, with net's weights; `in_place`: `out += h` and
    a ReLU(inplace=True) in each block (then net must use ReLU too)."""

    class TorchBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(WIDTH, WIDTH, dtype=torch.float64)
            self.act = torch.nn.ReLU(inplace=True) if in_place else torch.nn.Tanh()
            self.fc2 = torch.nn.Linear(WIDTH, WIDTH, dtype=torch.float64)

        def forward(self, h):
            out = self.fc2(self.act(self.fc1(h)))
            if in_place:
                out += h
                return out
            return h + out

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Linear(2, WIDTH, dtype=torch.float64)
            self.blocks = torch.nn.ModuleList(TorchBlock() for _ in range(BLOCKS))
            self.out = torch.nn.Linear(WIDTH, 1, dtype=torch.float64)

        def forward(self, x):
            h = self.inp(x)
            for block in self.blocks:
                h = block(h)
            return self.out(h)
    twin = TorchNet()
    with torch.no_grad():
        for (name, p), (_, q) in zip(twin.named_parameters(), net.named_parameters()):
            p.copy_(torch.from_numpy(q.data))
    return twin


def torch_backend_of(torch, twin):
    from calcml.debug.torch_backend import TorchBackend
    return TorchBackend(twin, torch.nn.functional.mse_loss, torch.optim.SGD(twin.parameters(), lr=0.1))


def as_torch(torch, batch):
    return tuple(torch.from_numpy(b.data) for b in batch)


@pytest.mark.parametrize("in_place", [False, True], ids=["h + f(h)", "out += h, ReLU(inplace=True)"])
def test_the_torch_backend_measures_the_same_shares_as_the_calcml_backend(in_place):
    torch = pytest.importorskip("torch")
    net, batch = problem()
    if in_place:
        for block in net.blocks:
            block.act = nn.ReLU()
    twin = torch_backend_of(torch, torch_twin(torch, net, in_place))
    ours = backend_of(net).step(batch)
    # twice: the first step finds the forks (and the outputs an in-place op changes later: fc1's
    # by the in-place ReLU, fc2's by `out += h`, kept as the layer made them), the second uses that
    for theirs in (twin.step(as_torch(torch, batch)), twin.step(as_torch(torch, batch))):
        assert set(ours.captures) == set(theirs.captures)
        for name, a in ours.captures.items():
            b = theirs.captures[name]
            for field in ("x", "out", "grad_x", "grad_out", "grad_x_total"):
                x, y = getattr(a, field), getattr(b, field)
                assert (x is None) == (y is None), (name, field)
                if x is not None:
                    np.testing.assert_allclose(np.asarray(y), x, rtol=1e-10, atol=1e-14, err_msg=f"{name}.{field}")


def test_the_torch_backends_shares_are_torchs_own_gradients():
    """The reference, block by block: its fc1 reads a leaf of its own, cut from h (that leaf's
    gradient is the share); h's gradient is then the other paths', and the whole is their sum."""
    torch = pytest.importorskip("torch")
    net, batch = problem()
    twin = torch_twin(torch, net, in_place=False)
    X, y = as_torch(torch, batch)
    record = torch_backend_of(torch, twin).step((X, y))
    for b in range(BLOCKS):
        h = twin.inp(X)
        for k, block in enumerate(twin.blocks):
            if k == b:
                h.retain_grad()
                kept, read = h, h.detach().requires_grad_()
                h = h + block.fc2(block.act(block.fc1(read)))
            else:
                h = block(h)
        torch.nn.functional.mse_loss(twin.out(h), y).backward()
        c = record.captures[f"blocks.{b}.fc1"]
        np.testing.assert_allclose(c.grad_x, read.grad.numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(c.grad_x_total, (kept.grad + read.grad).numpy(), rtol=1e-12, atol=1e-15)


def test_the_torch_backend_leaves_a_step_into_its_own_ops_and_measures_again_after():
    torch = pytest.importorskip("torch")
    net, batch = problem()
    backend = torch_backend_of(torch, torch_twin(torch, net, in_place=False))
    batch = as_torch(torch, batch)
    untraced = backend.step(batch)
    traced = backend.step(batch, traced=True)
    again = backend.step(batch)
    for b in range(BLOCKS):
        name = f"blocks.{b}.fc1"
        assert traced.captures[name].grad_x is None
        np.testing.assert_array_equal(traced.captures[name].grad_x_total, untraced.captures[name].grad_x_total)
        np.testing.assert_array_equal(again.captures[name].grad_x, untraced.captures[name].grad_x)
    assert not any(op.op in ("view_as", "view") for op in traced.trace.ops if op.scope.endswith("fc1"))


def test_the_residual_samples_agree_across_the_frameworks():
    """residual_mlp.py (calcml, h + f(h)) and torch_residual.py (in place: out += h, ReLU(inplace=True))
    are one model: with the same weights and batch, every layer's numbers agree."""
    torch = pytest.importorskip("torch")
    ours = runpy.run_path(str(SAMPLES / "residual_mlp.py"))
    theirs = runpy.run_path(str(SAMPLES / "torch_residual.py"))
    model = theirs["model"].double()
    with torch.no_grad():
        for (name, p), (other, q) in zip(model.named_parameters(), ours["model"].named_parameters()):
            assert name == other
            p.copy_(torch.from_numpy(q.data))
    X, y = ours["data"][0][:64], ours["data"][1][:64]
    a = backend_of(ours["model"]).step((cm.tensor(X), cm.tensor(y)))
    b = torch_backend_of(torch, model).step((torch.from_numpy(X), torch.from_numpy(y)))
    forks = sorted(name for name, c in a.captures.items() if c.grad_x_total is not None)
    assert forks == sorted(name for name, c in b.captures.items() if c.grad_x_total is not None)
    assert forks == [f"blocks.{i}.fc1" for i in range(8)]
    for name in forks:
        for field in ("grad_x", "grad_x_total"):
            np.testing.assert_allclose(np.asarray(getattr(b.captures[name], field)), getattr(a.captures[name], field),
                                       rtol=1e-10, atol=1e-14, err_msg=f"{name}.{field}")


def test_a_layer_reading_its_input_in_two_arguments_is_not_a_fork_by_that():
    """(x @ W) * x, called as layer(h, h) (attention's query and key): the layer reads h twice,
    and its ‖∂L/∂in‖ is the whole of h's gradient, in both frameworks."""

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(cm.randn(WIDTH, WIDTH) * 0.5)

        def forward(self, a, b):
            return (a @ self.weight) * b

    cm.manual_seed(0)
    inp, pair, out = nn.Linear(2, WIDTH), Pair(), nn.Linear(WIDTH, 1)
    net = nn.Sequential(inp, nn.Tanh())

    class Net2(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.pair, self.out = net, pair, out

        def forward(self, x):
            h = self.body(x)
            return self.out(self.pair(h, h))
    model = Net2()
    X, y = np.random.default_rng(1).normal(size=(BATCH, 2)), np.zeros((BATCH, 1))
    record = backend_of(model).step((cm.tensor(X), cm.tensor(y)))
    c = record.captures["pair"]
    assert c.grad_x_total is None
    np.testing.assert_array_equal(c.grad_x, record.captures["body.1"].grad_out)
    torch = pytest.importorskip("torch")

    class TorchPair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.from_numpy(pair.weight.data.copy()))

        def forward(self, a, b):
            return (a @ self.weight) * b

    class TorchNet2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(2, WIDTH, dtype=torch.float64), torch.nn.Tanh())
            self.pair = TorchPair()
            self.out = torch.nn.Linear(WIDTH, 1, dtype=torch.float64)

        def forward(self, x):
            h = self.body(x)
            return self.out(self.pair(h, h))
    twin = TorchNet2()
    with torch.no_grad():
        for (name, p), (other, q) in zip(twin.named_parameters(), model.named_parameters()):
            p.copy_(torch.from_numpy(q.data))
    theirs = torch_backend_of(torch, twin).step((torch.from_numpy(X), torch.from_numpy(y))).captures["pair"]
    assert theirs.grad_x_total is None
    np.testing.assert_allclose(np.asarray(theirs.grad_x), c.grad_x, rtol=1e-10, atol=1e-14)


def test_a_layer_reading_its_input_thrice_beside_a_shortcut_is_a_fork_with_its_reads_share():
    """h + mix(h, h, h) (self-attention's query, key and value, then a residual addition): every
    read gets the same branch, so the layer's share is what its three reads pass back together,
    the finite differences of the loss with all three perturbed and the shortcut left alone;
    the whole adds the shortcut's. The same in both frameworks."""

    class Mix(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(cm.randn(WIDTH, WIDTH) * 0.5)
            self.b = nn.Parameter(cm.randn(WIDTH, WIDTH) * 0.5)

        def forward(self, q, k, v):
            return cm.tanh(q @ self.a) * (k @ self.b) + v

    class Net3(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.mix, self.out = nn.Linear(2, WIDTH), Mix(), nn.Linear(WIDTH, 1)
            self.read = None

        def forward(self, x):
            h = self.inp(x)
            r = h if self.read is None else cm.tensor(self.read)
            return self.out(h + self.mix(r, r, r))

    cm.manual_seed(0)
    net = Net3()
    X, y = np.random.default_rng(4).normal(size=(BATCH, 2)), np.random.default_rng(5).normal(size=(BATCH, 1))
    batch = (cm.tensor(X), cm.tensor(y))
    c = backend_of(net).step(batch).captures["mix"]

    def loss_reading(u):
        net.read = u
        try:
            return loss_value(net, batch)
        finally:
            net.read = None
    own, = numeric_grad(loss_reading, [c.x])
    np.testing.assert_allclose(c.grad_x, own, rtol=1e-6, atol=1e-9)
    assert c.grad_x_total is not None and np.linalg.norm(c.grad_x_total - own) > 0.1 * np.linalg.norm(own)
    torch = pytest.importorskip("torch")

    class TorchMix(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.from_numpy(net.mix.a.data.copy()))
            self.b = torch.nn.Parameter(torch.from_numpy(net.mix.b.data.copy()))

        def forward(self, q, k, v):
            return torch.tanh(q @ self.a) * (k @ self.b) + v

    class TorchNet3(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.mix = torch.nn.Linear(2, WIDTH, dtype=torch.float64), TorchMix()
            self.out = torch.nn.Linear(WIDTH, 1, dtype=torch.float64)

        def forward(self, x):
            h = self.inp(x)
            return self.out(h + self.mix(h, h, h))
    twin = TorchNet3()
    with torch.no_grad():
        mine = dict(net.named_parameters())
        for name, p in twin.named_parameters():
            p.copy_(torch.from_numpy(mine[name].data))
    theirs = torch_backend_of(torch, twin).step((torch.from_numpy(X), torch.from_numpy(y))).captures["mix"]
    for field in ("grad_x", "grad_x_total", "grad_out"):
        np.testing.assert_allclose(np.asarray(getattr(theirs, field)), getattr(c, field), rtol=1e-10, atol=1e-14)
