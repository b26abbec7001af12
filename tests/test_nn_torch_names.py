"""PyTorch's nn names in calcml: losses, layers, containers, buffers, gradient clipping and the
functional forms. Each against torch in float64 (the same weights copied across: outputs and
gradients to 1e-10), the new ones' gradients against central differences (fd.py), and the
debugger's activation rows for the activation modules."""
from __future__ import annotations

import math

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml import nn
from fd import check_grad
from helpers import activation_layer_in_both

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOL = dict(rtol=1e-10, atol=1e-10)


def _pair(array):
    """A calcml leaf and a torch leaf holding the same float64 values."""
    return cm.tensor(array, requires_grad=True), torch.tensor(array, dtype=torch.float64, requires_grad=True)


def _same(c_out, t_out, *leaves):
    """Same forward values, and the same gradients of Σ out·R for each (calcml, torch) leaf pair."""
    np.testing.assert_allclose(c_out.data, t_out.detach().numpy(), **TOL)
    R = np.random.default_rng(7).standard_normal(c_out.shape)
    (c_out * R).sum().backward()
    (t_out * torch.from_numpy(R)).sum().backward()
    for c, t in leaves:
        assert c.grad is not None and t.grad is not None
        np.testing.assert_allclose(c.grad.data, t.grad.numpy(), **TOL)


def _copy_weights(c_module, t_module):
    with torch.no_grad():
        for (name, p), (tname, q) in zip(c_module.named_parameters(), t_module.named_parameters()):
            assert name == tname
            q.copy_(torch.from_numpy(p.data.copy()))


rng = np.random.default_rng(0)


# -- losses ------------------------------------------------------------------------------------------

def _regression_inputs():
    r = np.random.default_rng(1)
    return r.normal(size=(6, 3)) * 2.0, r.normal(size=(6, 3))


def _probabilities():
    r = np.random.default_rng(2)
    return r.uniform(0.05, 0.95, (6, 3)), (r.uniform(size=(6, 3)) > 0.5).astype(float)


def _logits_and_labels():
    r = np.random.default_rng(3)
    return r.normal(size=(6, 4)) * 2.0, np.array([0, 3, 1, 2, 3, 0])


LOSSES = [
    ("MSELoss", {}, _regression_inputs),
    ("L1Loss", {}, _regression_inputs),
    ("HuberLoss", {}, _regression_inputs),
    ("HuberLoss", {"delta": 0.3}, _regression_inputs),
    ("BCELoss", {}, _probabilities),
    ("BCEWithLogitsLoss", {}, _regression_inputs),
    ("CrossEntropyLoss", {}, _logits_and_labels),
    ("NLLLoss", {}, _logits_and_labels),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, kwargs, data", LOSSES, ids=[f"{n}{k}" for n, k, _ in LOSSES])
def test_loss_modules_match_torch(name, kwargs, data, reduction):
    x, target = data()
    if name == "NLLLoss":   # log-probabilities
        x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    c_loss = getattr(nn, name)(reduction=reduction, **kwargs)
    t_loss = getattr(torch.nn, name)(reduction=reduction, **kwargs)
    cx, tx = _pair(x)
    t_target = torch.from_numpy(target) if target.dtype.kind == "f" else torch.from_numpy(target).long()
    _same(c_loss(cx, target), t_loss(tx, t_target), (cx, tx))
    assert c_loss.reduction == reduction


def test_loss_modules_refuse_what_they_do_not_compute():
    with pytest.raises(ValueError, match="reduction must be"):
        nn.MSELoss(reduction="average")
    with pytest.raises(TypeError, match="deprecated"):
        nn.L1Loss(size_average=True)
    with pytest.raises(NotImplementedError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=0.1)
    with pytest.raises(NotImplementedError, match="pos_weight"):
        nn.BCEWithLogitsLoss(pos_weight=cm.ones(3))
    with pytest.raises(ValueError, match="delta"):
        nn.HuberLoss(delta=0.0)
    assert repr(nn.MSELoss()) == "MSELoss()" and repr(nn.L1Loss(reduction="sum")) == "L1Loss(reduction='sum')"


@pytest.mark.parametrize("delta", [1.0, 0.25, 3.0])
def test_l1_and_huber_gradients_by_central_differences(delta):
    x, y = _regression_inputs()
    x = np.where(np.abs(np.abs(x - y) - delta) < 0.05, x + 0.2, x)   # away from the switch at |d| = δ
    x = np.where(np.abs(x - y) < 0.05, x + 0.2, x)                    # and from l1's kink at 0

    def np_huber(a):
        d = a - y
        return np.where(np.abs(d) < delta, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))

    check_grad(lambda t: F.huber_loss(t, y, reduction="none", delta=delta), np_huber, [x])
    check_grad(lambda t: F.l1_loss(t, y, reduction="none"), lambda a: np.abs(a - y), [x])
    cx, tx = _pair(x)
    _same(F.huber_loss(cx, y, delta=delta), TF.huber_loss(tx, torch.from_numpy(y), delta=delta), (cx, tx))


def test_l1_loss_is_zero_gradient_at_zero_difference_as_torch():
    cx, tx = _pair(np.array([1.0, 2.0, 3.0]))
    _same(F.l1_loss(cx, np.array([1.0, 0.0, 5.0])), TF.l1_loss(tx, torch.tensor([1.0, 0.0, 5.0], dtype=torch.float64)),
          (cx, tx))
    assert cx.grad.data[0] == 0.0


# -- activations -----------------------------------------------------------------------------------------

ACTIVATIONS = [
    ("GELU", {}), ("SiLU", {}), ("ELU", {}), ("ELU", {"alpha": 0.5}), ("ELU", {"alpha": 2.0}),
    ("Softplus", {}), ("Softplus", {"beta": 2.0}), ("Softplus", {"beta": 0.5, "threshold": 3.0}),
]


@pytest.mark.parametrize("name, kwargs", ACTIVATIONS, ids=[f"{n}{k}" for n, k in ACTIVATIONS])
def test_activation_modules_match_torch(name, kwargs):
    x = np.random.default_rng(4).normal(scale=5.0, size=(8, 5))
    x[0, :3] = [25.0, -30.0, 0.0]   # past Softplus's threshold, far out on the tails, at 0
    cx, tx = _pair(x)
    _same(getattr(nn, name)(**kwargs)(cx), getattr(torch.nn, name)(**kwargs)(tx), (cx, tx))


def test_functional_forms_match_torch():
    x = np.random.default_rng(5).normal(scale=3.0, size=(4, 6))
    for c_fn, t_fn in ((F.gelu, TF.gelu), (F.silu, TF.silu), (F.elu, TF.elu), (F.softplus, TF.softplus),
                       (lambda t: F.elu(t, 0.3), lambda t: TF.elu(t, 0.3)),
                       (lambda t: F.softplus(t, 3.0, 2.0), lambda t: TF.softplus(t, 3.0, 2.0))):
        cx, tx = _pair(x)
        _same(c_fn(cx), t_fn(tx), (cx, tx))


def test_softplus_with_beta_and_threshold_by_central_differences():
    x = np.random.default_rng(6).normal(scale=3.0, size=(5, 4))
    x = np.where(np.abs(2.0 * x - 4.0) < 0.1, x + 0.3, x)   # away from the threshold's switch

    def np_softplus(a):
        return np.where(2.0 * a > 4.0, a, np.log1p(np.exp(2.0 * a)) / 2.0)

    check_grad(lambda t: F.softplus(t, beta=2.0, threshold=4.0), np_softplus, [x])


def test_elu_second_derivative_by_central_differences_of_the_gradient():
    from fd import numeric_hvp
    x = np.array([-2.0, -0.4, 0.3, 1.5])
    t = cm.tensor(x, requires_grad=True)
    (g,) = cm.grad((F.elu(t, 0.7) ** 2).sum(), [t], create_graph=True)
    v = np.array([1.0, -0.5, 2.0, 0.3])
    (hv,) = cm.grad((g * v).sum(), [t])
    (numeric,) = numeric_hvp(lambda s: (F.elu(s, 0.7) ** 2).sum(), [x], [v])
    np.testing.assert_allclose(hv.data, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("c_act, t_name", [(nn.GELU, "GELU"), (nn.SiLU, "SiLU"), (nn.ELU, "ELU")])
def test_activation_modules_get_an_activation_row_in_the_debugger(c_act, t_name):
    from calcml.debug import probes
    assert probes.ACTIVATIONS[c_act] == c_act.op.name
    la, lb = activation_layer_in_both(c_act(), getattr(torch.nn, t_name)())
    assert la.activation == c_act.op.name == lb.activation
    assert la.mean_local_derivative is not None and math.isfinite(la.mean_local_derivative)
    assert lb.mean_local_derivative == pytest.approx(la.mean_local_derivative, rel=1e-10)


def test_softplus_is_a_module_without_an_op_so_no_activation_row():
    from calcml.debug import probes
    assert nn.Softplus not in probes.ACTIVATIONS and repr(nn.Softplus()) == "Softplus(beta=1.0, threshold=20.0)"


# -- shape layers and dropout -----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [(), (0,), (1, 2), (0, -2), (-2, -1)])
def test_flatten_matches_torch(args):
    x = np.random.default_rng(8).normal(size=(2, 3, 4, 5))
    cx, tx = _pair(x)
    _same(nn.Flatten(*args)(cx), torch.nn.Flatten(*args)(tx), (cx, tx))


def test_unflatten_matches_torch_and_says_what_cannot_be_split():
    x = np.random.default_rng(9).normal(size=(3, 12))
    for args in ((1, (3, 4)), (-1, (2, -1)), (0, (3, 1))):
        cx, tx = _pair(x)
        _same(nn.Unflatten(*args)(cx), torch.nn.Unflatten(*args)(tx), (cx, tx))
    with pytest.raises(ValueError, match="cannot be split"):
        nn.Unflatten(1, (5, 3))(cm.tensor(x))
    with pytest.raises(ValueError, match="start_dim"):
        nn.Flatten(2, 1)(cm.tensor(np.zeros((2, 3, 4))))


def test_dropout_mask_statistics_and_its_gradient():
    cm.manual_seed(0)
    p = 0.3
    x = cm.tensor(np.full((400, 250), 2.0), requires_grad=True)
    layer = nn.Dropout(p)
    out = layer(x)
    kept = out.data != 0
    assert abs(1.0 - kept.mean() - p) < 0.005                      # 100,000 draws: ±5 standard deviations
    np.testing.assert_allclose(out.data[kept], 2.0 / (1.0 - p), rtol=1e-15)
    out.sum().backward()                                           # the mask is part of the graph
    np.testing.assert_allclose(x.grad.data, kept / (1.0 - p), rtol=1e-15)
    assert abs(out.data.mean() - 2.0) < 0.02                       # the expectation is kept
    # calcml's generator: the same seed draws the same mask, another seed another one
    cm.manual_seed(0)
    np.testing.assert_array_equal(layer(x).data, out.data)
    assert not np.array_equal(layer(x).data, out.data)


def test_dropout_is_the_identity_in_eval_mode_and_at_p_zero():
    x = cm.tensor(np.random.default_rng(10).normal(size=(5, 4)), requires_grad=True)
    layer = nn.Dropout(0.5).eval()
    assert layer(x) is x and F.dropout(x, 0.5, training=False) is x and F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0.0)
    assert layer.train().training and (layer(x).data == 0).any()
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)
    assert repr(nn.Dropout(0.2)) == "Dropout(p=0.2, inplace=False)"


def test_dropout_in_a_model_follows_train_and_eval():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    x = cm.randn(6, 4)
    model.eval()
    np.testing.assert_array_equal(model(x).data, model(x).data)
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


# -- containers, buffers and the module tree --------------------------------------------------------------

class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4)])
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 1)})

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.heads["a"](x).sum(axis=1) + self.heads["b"](x).reshape(-1)


class _TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4)])
        self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 2), "b": torch.nn.Linear(4, 1)})

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.heads["a"](x).sum(dim=1) + self.heads["b"](x).reshape(-1)


def test_module_list_and_dict_register_their_modules_as_torch():
    c, t = _Net(), _TorchNet().double()
    assert [n for n, _ in c.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert list(c.state_dict()) == list(t.state_dict())
    _copy_weights(c, t)
    x = np.random.default_rng(11).normal(size=(5, 3))
    cx, tx = _pair(x)
    _same(c(cx), t(tx), (cx, tx), *zip(c.parameters(), t.parameters()))
    assert len(c.blocks) == 3 and isinstance(c.blocks[-1], nn.Linear) and len(c.blocks[1:]) == 2
    assert list(c.heads) == ["a", "b"] and "a" in c.heads and len(c.heads) == 2
    assert [k for k, _ in c.heads.items()] == list(c.heads.keys())
    c.blocks.append(nn.ReLU())
    c.blocks.insert(0, nn.Identity())
    assert [type(m).__name__ for m in c.blocks] == ["Identity", "Linear", "Tanh", "Linear", "ReLU"]
    assert "blocks.1.weight" in c.state_dict()
    del c.blocks[0]
    assert "blocks.0.weight" in c.state_dict() and len(c.blocks) == 4
    c.heads.pop("b")
    assert [n for n, _ in c.named_parameters() if n.startswith("heads")] == ["heads.a.weight", "heads.a.bias"]
    with pytest.raises(TypeError, match="holds modules"):
        c.blocks.append(3)
    with pytest.raises(IndexError, match="out of range"):
        c.blocks[9]


def test_children_apply_requires_grad_train_and_eval_as_torch():
    c, t = _Net(), _TorchNet()
    assert [n for n, _ in c.named_children()] == [n for n, _ in t.named_children()] == ["blocks", "heads"]
    assert [type(m).__name__ for m in c.children()] == [type(m).__name__ for m in t.children()]
    seen_c, seen_t = [], []
    c.apply(lambda m: seen_c.append(type(m).__name__))
    t.apply(lambda m: seen_t.append(type(m).__name__.replace("_TorchNet", "_Net")))
    assert seen_c == seen_t   # children before their parent, in PyTorch's order
    assert c.requires_grad_(False) is c and not any(p.requires_grad for p in c.parameters())
    c.requires_grad_()
    assert all(p.requires_grad for p in c.parameters())
    assert c.eval() is c and not c.blocks[0].training and c.train() is c and c.heads["a"].training


class _WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.register_buffer("scale", cm.tensor([1.0, 2.0]))
        self.register_buffer("scratch", cm.zeros(3), persistent=False)

    def forward(self, x):
        return self.lin(x) * self.scale


def test_buffers_are_in_the_state_dict_and_restored():
    a = _WithBuffers()
    assert list(a.state_dict()) == ["scale", "lin.weight", "lin.bias"]   # a module's own, then its children's
    assert "scratch" not in a.state_dict() and [n for n, _ in a.named_buffers()] == ["scale", "scratch"]
    assert all(b is not p for b in a.buffers() for p in a.parameters()) and len(list(a.parameters())) == 2
    a.scale.data[...] = [3.0, 4.0]
    b = _WithBuffers()
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.scale.data, [3.0, 4.0])
    np.testing.assert_array_equal(b(cm.ones(1, 2)).data, a(cm.ones(1, 2)).data)
    with pytest.raises(KeyError, match="scale"):
        b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "scale"})
    b.scale = cm.tensor([5.0, 6.0])   # assigning replaces the buffer
    assert b.state_dict()["scale"].tolist() == [5.0, 6.0]
    with pytest.raises(KeyError, match="already exists"):
        b.register_buffer("lin", cm.zeros(1))
    with pytest.raises(KeyError, match="'.'"):
        b.register_buffer("a.b", cm.zeros(1))


def test_state_dict_keys_follow_torch_order_with_buffers():
    c = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    assert list(c.state_dict()) == list(t.state_dict())


# -- gradient clipping ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    r = np.random.default_rng(12)
    grads = [r.normal(size=(3, 4)), r.normal(size=4), r.normal(size=(2,))]
    c_params = [nn.Parameter(np.zeros(g.shape)) for g in grads]
    t_params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for cp, tp, g in zip(c_params, t_params, grads):
        cp.grad = g.copy()
        tp.grad = torch.from_numpy(g.copy())
    c_params.append(nn.Parameter(np.zeros(2)))   # no gradient: skipped
    total_c = nn.utils.clip_grad_norm_(c_params, max_norm, norm_type=norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(t_params, max_norm, norm_type=norm_type)
    assert isinstance(total_c, cm.Tensor) and total_c.shape == ()
    np.testing.assert_allclose(total_c.item(), total_t.item(), **TOL)
    for cp, tp in zip(c_params, t_params):
        np.testing.assert_allclose(cp.grad.data, tp.grad.numpy(), **TOL)


def test_clip_grad_norm_of_a_model_and_non_finite_norms():
    model = nn.Linear(3, 2)
    (model(cm.randn(4, 3)) ** 2).sum().backward()
    before = np.sqrt(sum((p.grad.data ** 2).sum() for p in model.parameters()))
    total = nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    assert total.item() == pytest.approx(before, rel=1e-12)
    after = np.sqrt(sum((p.grad.data ** 2).sum() for p in model.parameters()))
    assert after == pytest.approx(1e-3, rel=1e-5)
    model.weight.grad.data[0, 0] = np.nan
    with pytest.raises(RuntimeError, match="error_if_nonfinite"):
        nn.utils.clip_grad_norm_(model.parameters(), 1.0, error_if_nonfinite=True)
    assert nn.utils.clip_grad_norm_([nn.Parameter(np.zeros(2))], 1.0).item() == 0.0


def test_clip_grad_value_matches_torch():
    g = np.random.default_rng(13).normal(size=(4, 5)) * 3
    cp, tp = nn.Parameter(np.zeros(g.shape)), torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64))
    cp.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
    assert nn.utils.clip_grad_value_(cp, 1.5) is None
    torch.nn.utils.clip_grad_value_(tp, 1.5)
    np.testing.assert_array_equal(cp.grad.data, tp.grad.numpy())


# -- one_hot ------------------------------------------------------------------------------------------------

def test_one_hot_matches_torch():
    labels = np.array([[0, 3], [2, 1]])
    out = F.one_hot(cm.tensor(labels))
    expected = TF.one_hot(torch.from_numpy(labels)).numpy()
    assert out.dtype == np.int64 == expected.dtype and out.shape == expected.shape and not out.requires_grad
    np.testing.assert_array_equal(F.one_hot(cm.tensor(labels.astype(float))).data, expected)   # whole-number floats
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(F.one_hot(labels, num_classes=6).data, TF.one_hot(torch.from_numpy(labels), 6))
    with pytest.raises(ValueError, match="out of range"):
        F.one_hot(labels, num_classes=3)
    with pytest.raises(ValueError, match="integers"):
        F.one_hot(np.array([0.5]))
    with pytest.raises(ValueError, match="≥ 0"):
        F.one_hot(np.array([-1]))


# -- LayerNorm, BatchNorm1d, Embedding -------------------------------------------------------------------------

@pytest.mark.parametrize("shape, normalized", [((5, 6), 6), ((2, 3, 4), (3, 4)), ((4, 3), 3)])
def test_layer_norm_matches_torch(shape, normalized):
    r = np.random.default_rng(14)
    c, t = nn.LayerNorm(normalized), torch.nn.LayerNorm(normalized, dtype=torch.float64)
    for p in c.parameters():
        p.data[...] = r.normal(size=p.shape)
    _copy_weights(c, t)
    cx, tx = _pair(r.normal(size=shape) * 3 + 1)
    _same(c(cx), t(tx), (cx, tx), *zip(c.parameters(), t.parameters()))
    assert list(c.state_dict()) == list(t.state_dict())


def test_layer_norm_gradient_by_central_differences():
    r = np.random.default_rng(15)
    x, w, b = r.normal(size=(4, 5)), r.normal(size=5), r.normal(size=5)

    def np_layer_norm(x, w, b):
        mu = x.mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-5) * w + b

    def cm_layer_norm(x, w, b):
        layer = nn.LayerNorm(5)
        layer.weight, layer.bias = w, b
        return layer(x)

    check_grad(cm_layer_norm, np_layer_norm, [x, w, b])
    check_grad(lambda x: nn.LayerNorm(5, elementwise_affine=False)(x),
               lambda x: np_layer_norm(x, 1.0, 0.0), [x])


@pytest.mark.parametrize("shape", [(8, 3), (6, 3, 4)])
@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batch_norm_matches_torch_in_train_and_eval(shape, momentum):
    r = np.random.default_rng(16)
    c = nn.BatchNorm1d(3, momentum=momentum)
    t = torch.nn.BatchNorm1d(3, momentum=momentum, dtype=torch.float64)
    for p in c.parameters():
        p.data[...] = r.normal(size=p.shape)
    _copy_weights(c, t)
    for step in range(3):
        cx, tx = _pair(r.normal(size=shape) * 2 + step)
        _same(c(cx), t(tx), (cx, tx), *zip(c.parameters(), t.parameters()))
        for p, q in zip(c.parameters(), t.parameters()):
            p.grad, q.grad = None, None
    for name, value in t.state_dict().items():
        np.testing.assert_allclose(c.state_dict()[name], value.numpy(), **TOL)
    assert c.num_batches_tracked.item() == 3
    c.eval(), t.eval()
    cx, tx = _pair(r.normal(size=shape))
    _same(c(cx), t(tx), (cx, tx), *zip(c.parameters(), t.parameters()))


def test_batch_norm_state_dict_round_trips_and_loads_torchs():
    t = torch.nn.BatchNorm1d(4, dtype=torch.float64)
    t(torch.randn(10, 4, dtype=torch.float64) * 3 + 2)
    c = nn.BatchNorm1d(4)
    c.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    np.testing.assert_array_equal(c.running_mean.data, t.running_mean.numpy())
    np.testing.assert_array_equal(c.running_var.data, t.running_var.numpy())
    assert c.num_batches_tracked.item() == 1
    d = nn.BatchNorm1d(4)
    d.load_state_dict(c.state_dict())
    x = np.random.default_rng(17).normal(size=(5, 4))
    c.eval(), d.eval(), t.eval()
    np.testing.assert_allclose(d(cm.tensor(x)).data, t(torch.from_numpy(x)).detach().numpy(), **TOL)
    assert [n for n, _ in c.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert len(list(c.parameters())) == 2


def test_batch_norm_without_running_stats_or_affine_and_its_errors():
    r = np.random.default_rng(18)
    c = nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    t = torch.nn.BatchNorm1d(3, affine=False, track_running_stats=False, dtype=torch.float64)
    assert list(c.state_dict()) == list(t.state_dict()) == []
    c.eval(), t.eval()   # batch statistics even in eval: there are no running ones
    cx, tx = _pair(r.normal(size=(7, 3)))
    _same(c(cx), t(tx), (cx, tx))
    with pytest.raises(ValueError, match="more than 1 value"):
        nn.BatchNorm1d(3)(cm.tensor(np.ones((1, 3))))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        nn.BatchNorm1d(3)(cm.tensor(np.ones((4, 2))))


def test_batch_norm_gradient_by_central_differences():
    r = np.random.default_rng(19)
    x, w, b = r.normal(size=(6, 3)), r.normal(size=3), r.normal(size=3)

    def np_batch_norm(x, w, b):
        mu = x.mean(axis=0)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=0) + 1e-5) * w + b

    def cm_batch_norm(x, w, b):
        layer = nn.BatchNorm1d(3)
        layer.weight, layer.bias = w, b
        return layer(x)

    check_grad(cm_batch_norm, np_batch_norm, [x, w, b])


@pytest.mark.parametrize("padding_idx", [None, 1, -1])
def test_embedding_matches_torch(padding_idx):
    c = nn.Embedding(5, 3, padding_idx=padding_idx)
    t = torch.nn.Embedding(5, 3, padding_idx=padding_idx, dtype=torch.float64)
    c.weight.data[...] = np.random.default_rng(20).normal(size=(5, 3))   # padding row too: forward reads it
    _copy_weights(c, t)
    idx = np.array([[0, 1, 1], [4, 2, 1]])
    c_out, t_out = c(cm.tensor(idx.astype(float))), t(torch.from_numpy(idx))
    _same(c_out, t_out, (c.weight, t.weight))   # repeated indices add up; the padding row gets nothing
    if padding_idx is not None:
        assert np.all(c.weight.grad.data[padding_idx % 5] == 0.0)
        assert np.all(nn.Embedding(5, 3, padding_idx=padding_idx).weight.data[padding_idx] == 0.0)
    assert c.padding_idx == t.padding_idx
    with pytest.raises(IndexError, match="0..4"):
        c(np.array([5]))


def test_embedding_initialisation_is_standard_normal_from_calcmls_generator():
    cm.manual_seed(3)
    a = nn.Embedding(200, 50).weight.data
    cm.manual_seed(3)
    np.testing.assert_array_equal(nn.Embedding(200, 50).weight.data, a)
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1.0) < 0.02
