"""The PyTorch backend: the same model in both frameworks (float64, the same weights, data and
optimiser) gives the same numbers in every snapshot statistic, the report and the warnings; and
what only torch models do (in-place activations, residual additions, modules called twice)
is captured as the calculus says. Skipped where torch is not installed."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import calcml as cm                                      # noqa: E402
import calcml.nn.functional as F                         # noqa: E402
from calcml.debug import Session, SessionConfig          # noqa: E402
from calcml.debug.codec import for_json, plain           # noqa: E402
from calcml.debug.report import build_report             # noqa: E402
from calcml.debug.torch_backend import TorchBackend      # noqa: E402
from helpers import make_spec                            # noqa: E402

ACTS = [("Tanh", cm.nn.Tanh, torch.nn.Tanh), ("ReLU", cm.nn.ReLU, torch.nn.ReLU),
        ("Sigmoid", cm.nn.Sigmoid, torch.nn.Sigmoid), ("LeakyReLU", cm.nn.LeakyReLU, torch.nn.LeakyReLU)]


def twins(widths=(3, 16, 16, 16, 2), acts=("Tanh", "ReLU", "Sigmoid"), seed=0):
    """The same MLP in calcml and torch, float64, torch's weights copied from calcml's."""
    cm.manual_seed(seed)
    by_name = {name: (c, t) for name, c, t in ACTS}
    cm_layers, torch_layers = [], []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        cm_layers.append(cm.nn.Linear(a, b))
        torch_layers.append(torch.nn.Linear(a, b, dtype=torch.float64))
        if i < len(widths) - 2:
            c, t = by_name[acts[i % len(acts)]]
            cm_layers.append(c())
            torch_layers.append(t())
    cm_model, torch_model = cm.nn.Sequential(*cm_layers), torch.nn.Sequential(*torch_layers)
    with torch.no_grad():
        for (name, p), (tname, q) in zip(cm_model.named_parameters(), torch_model.named_parameters()):
            assert name == tname
            q.copy_(torch.from_numpy(p.data.copy()))
    return cm_model, torch_model


def data(n=24, d=3, k=2, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, np.tanh(X @ rng.normal(size=(d, k))) + 0.1 * rng.normal(size=(n, k))


def sessions(reg=None, lr=0.1, momentum=0.0, adam=False, steps=12, config=None, **kw):
    cm_model, torch_model = twins(**kw)
    X, y = data(d=kw.get("widths", (3,))[0], k=kw.get("widths", (0, 2))[-1])
    if adam:
        cm_opt = cm.optim.Adam(cm_model.parameters(), lr=lr)
        torch_opt = torch.optim.Adam(torch_model.parameters(), lr=lr)
    else:
        cm_opt = cm.optim.SGD(cm_model.parameters(), lr=lr, momentum=momentum)
        torch_opt = torch.optim.SGD(torch_model.parameters(), lr=lr, momentum=momentum)
    config = config or SessionConfig(detail_every=1, curvature_every=4, histogram_every=5)
    a = Session(make_spec(cm_model, F.mse_loss, (X, y), optimizer=cm_opt, regularizer=reg, batch_size=8,
                          steps=steps), config=config)
    b = Session(make_spec(torch_model, torch.nn.functional.mse_loss, (X, y), optimizer=torch_opt, regularizer=reg,
                          batch_size=8, steps=steps), config=config)
    assert isinstance(b.backend, TorchBackend)
    return a, b


def close(x, y, tol=1e-10, path="") -> list:
    """Where two plain records differ by more than tol (relative, or absolute near 0)."""
    if isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), f"{path}: keys {set(x) ^ set(y)}"
        return [d for k in x for d in close(x[k], y[k], tol, f"{path}.{k}")]
    if isinstance(x, (list, tuple)):
        assert isinstance(y, (list, tuple)) and len(x) == len(y), f"{path}: lengths"
        return [d for i, (a, b) in enumerate(zip(x, y)) for d in close(a, b, tol, f"{path}[{i}]")]
    if isinstance(x, float) or isinstance(y, float):
        if x is None or y is None:
            return [] if x is y else [f"{path}: {x} vs {y}"]
        if math.isnan(x) and math.isnan(y):
            return []
        return [] if abs(x - y) <= tol * max(1.0, abs(x), abs(y)) else [f"{path}: {x!r} vs {y!r}"]
    return [] if x == y else [f"{path}: {x!r} vs {y!r}"]


def compare_runs(a: Session, b: Session) -> None:
    a.run(), b.run()
    compared = 0
    while True:
        sa, sb = a.tick(), b.tick()
        if sa is None or sb is None:
            assert sa is None and sb is None
            break
        ra, rb = plain(sa), plain(sb)
        for r in (ra, rb):
            r.pop("steps_per_sec")
        assert close(ra, rb) == [], f"step {sa.step}"
        compared += 1
    assert compared >= 10
    ra, rb = build_report(a), build_report(b)
    for r in (ra, rb):
        for key in ("model", "optimizer"):
            r.pop(key)
    assert close(for_json(ra), for_json(rb)) == []


def test_an_mlp_gives_the_same_numbers_in_both_frameworks():
    a, b = sessions()
    compare_runs(a, b)
    layers = b.snapshot.layers
    assert [layer.type for layer in layers] == ["Linear", "Tanh", "Linear", "ReLU", "Linear", "Sigmoid", "Linear"]
    assert layers[1].mean_local_derivative is not None and layers[3].dead_fraction is not None
    assert b.curvature is not None and b.curvature.lambda_max > 0 and b.curvature.lr_edge is not None


def test_the_same_numbers_with_a_regulariser_momentum_and_leaky_relu():
    a, b = sessions(reg=cm.reg.L2(1e-2), momentum=0.9, acts=("LeakyReLU", "Tanh"))
    compare_runs(a, b)
    assert b.snapshot.penalty > 0
    a, b = sessions(reg=cm.reg.L1(1e-3), acts=("ReLU",))
    compare_runs(a, b)


def test_the_same_numbers_with_adam():
    a, b = sessions(adam=True, lr=0.01, acts=("Tanh",))
    compare_runs(a, b)
    weight = b.snapshot.layers[0].params["weight"]
    assert weight.effective_lr is not None and weight.effective_lr > 0


def test_a_vanishing_gradient_warns_the_same_in_both():
    widths = (3,) + (8,) * 12 + (1,)
    a, b = sessions(widths=widths, acts=("Sigmoid",), steps=3, lr=0.01)
    a.run_to_end(), b.run_to_end()
    kinds_a = [(w.kind, w.layer, w.message) for w in a.warnings]
    kinds_b = [(w.kind, w.layer, w.message) for w in b.warnings]
    assert any(k == "vanishing_gradient" for k, _, _ in kinds_b)
    assert [(k, layer) for k, layer, _ in kinds_a] == [(k, layer) for k, layer, _ in kinds_b]


# -- what torch models do that Sequential calcml ones do not ----------------------------------

class Residual(torch.nn.Module):
    """x → fc1 → ReLU(inplace) → fc2, plus x (in place), then the head; fc2 is called twice."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 4, dtype=torch.float64)
        self.act = torch.nn.ReLU(inplace=True)
        self.fc2 = torch.nn.Linear(4, 4, dtype=torch.float64)
        self.head = torch.nn.Linear(4, 1, dtype=torch.float64)

    def forward(self, x):
        h = self.act(self.fc1(x))
        h = self.fc2(h)
        h += x
        return self.head(h)


def test_in_place_relu_and_residual_addition_are_captured_as_the_calculus_says():
    torch.manual_seed(0)
    model = Residual()
    X = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    backend = TorchBackend(model, torch.nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1))
    record = backend.step((X, y))
    # the reference: the same forward, by hand, with every intermediate kept
    z1 = X @ model.fc1.weight.T + model.fc1.bias
    z1.retain_grad()
    a1 = torch.relu(z1)
    a1.retain_grad()
    z2 = a1 @ model.fc2.weight.T + model.fc2.bias
    z2.retain_grad()
    h = z2 + X
    torch.nn.functional.mse_loss(model.head(h), y).backward()
    act = record.captures["act"]
    assert np.allclose(act.x, z1.detach().numpy(), rtol=1e-12, atol=0)     # the input, before ReLU overwrote it
    assert np.allclose(act.out, a1.detach().numpy(), rtol=1e-12, atol=0)
    assert np.allclose(act.grad_out, a1.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert np.allclose(act.grad_x, z1.grad.numpy(), rtol=1e-12, atol=1e-15)  # ∂L/∂z1: a1.grad masked by z1 > 0
    assert np.allclose(record.captures["fc1"].grad_out, z1.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert np.allclose(record.captures["fc2"].grad_out, z2.grad.numpy(), rtol=1e-12, atol=1e-15)
    for name, p in model.named_parameters():
        assert np.allclose(record.data_grads[name], p.grad.numpy(), rtol=1e-12, atol=1e-15), name


def test_a_non_finite_loss_is_located_and_the_step_not_applied():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3, dtype=torch.float64), torch.nn.Tanh(),
                                torch.nn.Linear(3, 1, dtype=torch.float64))
    X, y = np.random.default_rng(0).normal(size=(8, 2)), np.zeros((8, 1))
    X[3, 1] = np.inf
    s = Session(make_spec(model, torch.nn.functional.mse_loss, (X, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    s.run_to_end()
    assert s.stop_info is not None and s.stop_info.reason == "non_finite"
    assert "forward op #0 'linear' in layer 0" in s.stop_info.detail and "entries inf" in s.stop_info.detail
    for n, p in model.named_parameters():
        assert torch.equal(before[n], p.detach()), n


# -- step-into: one iteration op by op ------------------------------------------------------------

def _layer_ops(trace) -> list:
    """(phase, op, layer, the statistics) of the ops inside layers (the loss is written as
    different ops in the two frameworks: one mse_loss in torch, its pieces in calcml)."""
    out = []
    for op in trace.ops:
        if op.scope:
            out.append((op.phase, op.op, op.scope, op.inputs, plain(op.value), plain(op.upstream),
                        plain(list(op.factors)), plain(list(op.grads))))
    return out


def test_a_step_into_records_the_same_ops_and_numbers_in_both_frameworks():
    a, b = sessions(acts=("Tanh", "ReLU", "Sigmoid"))
    for s in (a, b):
        s.step_into()
    ta, tb = a.tick().trace, b.tick().trace
    ops_a, ops_b = _layer_ops(ta), _layer_ops(tb)
    assert [o[:3] for o in ops_a] == [o[:3] for o in ops_b]
    assert len(ops_b) == 2 * 7                           # every layer, forward and backward
    for x, y in zip(ops_a, ops_b):
        label = x[:3]
        assert x[3][1:] == y[3][1:], label              # the parameters each op read
        assert close(list(x[4:]), list(y[4:])) == [], label
    backward = [op for op in tb.ops if op.phase == "backward"]
    assert [op.op for op in backward][0] == "mse_loss"   # the loss first, then the layers from the top
    relu = next(op for op in backward if op.op == "relu")
    assert relu.formulas == ("d relu(z)/dz = 1 if z > 0 else 0",) and relu.factors[0] is not None


def test_the_first_non_finite_op_is_named_with_its_layer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3, dtype=torch.float64), torch.nn.Tanh(),
                                torch.nn.Linear(3, 1, dtype=torch.float64))

    def loss(pred, target):
        return (pred - target).log().mean()      # log of a negative number: NaN, in the loss

    X, y = np.random.default_rng(0).normal(size=(8, 2)), np.full((8, 1), 10.0)
    s = Session(make_spec(model, loss, (X, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    s.run_to_end()
    assert s.stop_info.reason == "non_finite"
    assert "forward op" in s.stop_info.detail and "'log'" in s.stop_info.detail
    assert "the loss function" in s.stop_info.detail and "nan" in s.stop_info.detail


def test_a_conv_nets_units_are_its_channels():
    """After a convolution, a unit is a channel: a ReLU channel that is off at every pixel of
    every image is dead, one that is on somewhere is not."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1, dtype=torch.float64)
    with torch.no_grad():
        conv.bias[:] = torch.tensor([0.0, -100.0, 0.0, 0.0], dtype=torch.float64)   # channel 1: always off
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 1, dtype=torch.float64))
    X = np.random.default_rng(0).normal(size=(6, 1, 8, 8))
    y = np.zeros((6, 1))
    s = Session(make_spec(model, torch.nn.functional.mse_loss, (X, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                          steps=1), SessionConfig(curvature_every=0))
    with torch.no_grad():
        out = torch.relu(conv(torch.from_numpy(X)))   # at the weights the step starts from
    final = s.run_to_end()
    relu = next(layer for layer in final.layers if layer.type == "ReLU")
    assert relu.dead_fraction == pytest.approx(0.25)
    assert relu.mean_local_derivative == pytest.approx(float((out > 0).double().mean()), rel=1e-12)


def test_a_torch_model_file_with_a_dataloader_and_adam(tmp_path):
    from calcml.debug import ModelFileError, load_model_file
    path = tmp_path / "model.py"
    path.write_text('''"""A torch model file."""
import torch
from torch.utils.data import DataLoader, TensorDataset
model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
X = torch.randn(64, 3)
data = DataLoader(TensorDataset(X, X[:, :1] ** 2), batch_size=16, shuffle=True)
loss = torch.nn.functional.mse_loss
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
steps = 9
''')
    spec = load_model_file(str(path))
    assert spec.framework == "torch" and spec.description == "A torch model file."
    s = Session(spec, SessionConfig(curvature_every=0))
    final = s.run_to_end()
    assert s.state == "finished" and final.step == 9 and s.epoch == 2        # 4 batches an epoch
    assert final.layers[0].params["weight"].grad_norm > 0
    path.write_text(path.read_text().replace("torch.optim.Adam(model.parameters(), lr=0.01)", "'adam'"))
    with pytest.raises(ModelFileError, match=r"optimizer must be a torch.optim optimiser"):
        load_model_file(str(path))


def test_a_torch_model_file_is_seeded_before_it_runs(tmp_path):
    from calcml.debug import load_model_file
    path = tmp_path / "model.py"
    path.write_text('''import torch
model = torch.nn.Linear(3, 1)
data = (torch.randn(8, 3), torch.randn(8, 1))
loss = torch.nn.functional.mse_loss
seed = 7
''')
    first, second = (load_model_file(str(path)).model.weight.detach().clone() for _ in range(2))
    assert torch.equal(first, second)
    assert not torch.equal(first, load_model_file(str(path), seed=8).model.weight.detach())


class Twice(torch.nn.Module):
    """One Linear applied twice (shared weights): x → shared → tanh → shared → head."""

    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Linear(3, 3, dtype=torch.float64)
        self.head = torch.nn.Linear(3, 1, dtype=torch.float64)

    def forward(self, x):
        return self.head(self.shared(torch.tanh(self.shared(x))))


def test_a_module_called_twice_is_a_layer_per_call_each_call_whole():
    """`shared` is its first call and `shared@2` its second, each with its own input, output and
    gradients (though the first call's gradients arrive later in the backward pass); the weights'
    gradient, the sum over both calls, is on the first row; the functional tanh between them is
    a layer of its own."""
    torch.manual_seed(0)
    model = Twice()
    X, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    backend = TorchBackend(model, torch.nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1))
    record = backend.step((X, y))
    assert [(i.name, i.has_params) for i in backend.layers()] == [
        ("shared", True), ("tanh()", False), ("shared@2", False), ("head", True)]
    a1 = model.shared(X)
    a1.retain_grad()
    h = torch.tanh(a1)
    h.retain_grad()
    a2 = model.shared(h)
    a2.retain_grad()
    torch.nn.functional.mse_loss(model.head(a2), y).backward()
    first, between, second = (record.captures[name] for name in ("shared", "tanh()", "shared@2"))
    for c, x, out in ((first, X, a1), (between, a1, h), (second, h, a2)):
        assert np.allclose(c.x, x.detach().numpy(), rtol=1e-13) and np.allclose(c.out, out.detach().numpy(), rtol=1e-13)
    assert np.allclose(first.grad_out, a1.grad.numpy(), rtol=1e-12) and first.grad_x is None
    assert np.allclose(between.grad_x, a1.grad.numpy(), rtol=1e-12)
    assert np.allclose(between.grad_out, h.grad.numpy(), rtol=1e-12)
    assert np.allclose(second.grad_out, a2.grad.numpy(), rtol=1e-12)
    assert np.allclose(second.grad_x, h.grad.numpy(), rtol=1e-12)
    assert np.allclose(record.captures["head"].grad_x, a2.grad.numpy(), rtol=1e-12)


def test_a_model_off_the_cpu_is_refused_with_what_to_do(monkeypatch):
    from calcml.debug import torch_backend
    model = torch.nn.Linear(2, 1)
    monkeypatch.setattr(torch_backend, "off_cpu", lambda m: "cuda:0")   # no GPU here: as if it were on one
    with pytest.raises(ValueError, match=r"on the CPU for now.*cuda:0: move it with model.to\('cpu'\)"):
        TorchBackend(model, torch.nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_a_compiled_model_gives_the_numbers_of_the_same_model_eager(backend):
    """torch.compile runs calcml's hooks (outside its graphs); the layers keep the names of the
    model it wraps, and every statistic is the eager model's, curvature included (measured
    through the model eager: a compiled graph has no double backward). aot_eager needs no C
    compiler; inductor does."""
    if backend == "inductor" and not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("inductor compiles C++: no C compiler here")
    X, y = data()
    snaps = []
    for compiled in (False, True):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 8, dtype=torch.float64), torch.nn.Tanh(),
                                  torch.nn.Linear(8, 2, dtype=torch.float64))
        model = torch.compile(net, backend=backend) if compiled else net
        s = Session(make_spec(model, torch.nn.functional.mse_loss, (X, y),
                              optimizer=torch.optim.SGD(model.parameters(), lr=0.1), steps=4),
                    SessionConfig(detail_every=1, curvature_every=2))
        snaps.append(s.run_to_end())
        assert s.curvature_note is None and len(s.curvature_history) == 2
    eager, compiled = (plain(x) for x in snaps)
    for r in (eager, compiled):
        r.pop("steps_per_sec")
    assert [layer["name"] for layer in compiled["layers"]] == ["0", "1", "2"]
    assert close(eager, compiled, tol=1e-12) == []


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_is_measured_in_float32(dtype):
    """numpy has no bfloat16, and float16 sums lose digits: the statistics of a half-precision
    model are those of its tensors widened to float32 (as computed here by torch), step-into
    and the report included."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1)).to(dtype)
    X = np.random.default_rng(0).normal(size=(32, 3))
    y = X[:, :1] ** 2
    spec = make_spec(model, torch.nn.functional.mse_loss, (X, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                     steps=4, regularizer=cm.reg.L2(1e-3))
    session = Session(spec, SessionConfig(curvature_every=0, detail_every=1))
    session.step(3)
    for _ in range(3):
        session.tick()
    w = model[0].weight
    grad = session.backend.grads()["0.weight"]
    assert grad.dtype == np.float32 and np.array_equal(grad, w.grad.float().numpy())
    session.step_into()
    snapshot = session.tick()
    assert snapshot.trace is not None and snapshot.trace.ops and session.stop_info is None
    stats = snapshot.layers[0].params["weight"]
    assert stats.weight_norm == pytest.approx(float(torch.linalg.vector_norm(w.detach().float())), rel=1e-6)
    assert stats.total_grad_norm == pytest.approx(float(torch.linalg.vector_norm(w.grad.float())), rel=1e-6)
    tanh = snapshot.layers[1]
    assert tanh.mean_local_derivative is not None and math.isfinite(tanh.mean_local_derivative)
    report = build_report(session)
    assert report["layers"][0]["params"]["weight"]["grad_norm"] == pytest.approx(stats.grad_norm)
