"""F.layer_norm, F.batch_norm, F.embedding, F.pad and GELU's tanh approximation against torch in
float64 (outputs and gradients to 1e-10), and their gradients against central differences; the
modules run the same functions. Also state_dict()'s values: detached tensors sharing the arrays."""
import numpy as np
import pytest

import calcml as cm
from fd import check_grad

torch = pytest.importorskip("torch")
F, TF = cm.nn.functional, torch.nn.functional
TOL = dict(rtol=1e-10, atol=1e-10)
rng = np.random.default_rng(0)


def both(*arrays):
    """calcml and torch leaves (requiring grad) of the same float64 arrays."""
    return ([cm.tensor(a, requires_grad=True) for a in arrays],
            [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays])


def same(c_out, t_out, c_in, t_in):
    """Equal outputs, and equal gradients of sum(out · R) for every input."""
    np.testing.assert_allclose(c_out.data, t_out.detach().numpy(), **TOL)
    R = rng.standard_normal(c_out.shape)
    (c_out * R).sum().backward()
    (t_out * torch.tensor(R)).sum().backward()
    for c, t in zip(c_in, t_in):
        np.testing.assert_allclose(np.asarray(c.grad), t.grad.numpy(), **TOL)


def test_layer_norm_matches_torch_and_central_differences():
    x, w, b = rng.standard_normal((4, 3, 5)), rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    (cx, cw, cb), (tx, tw, tb) = both(x, w, b)
    same(F.layer_norm(cx, (3, 5), cw, cb, eps=1e-3), TF.layer_norm(tx, (3, 5), tw, tb, eps=1e-3),
         (cx, cw, cb), (tx, tw, tb))

    def np_ln(x, w, b):
        c = x - x.mean(axis=(1, 2), keepdims=True)
        return c / np.sqrt((c * c).mean(axis=(1, 2), keepdims=True) + 1e-5) * w + b
    check_grad(lambda x, w, b: F.layer_norm(x, (3, 5), w, b), np_ln, [x, w, b])
    with pytest.raises(ValueError, match="last dimensions"):
        F.layer_norm(cm.tensor(x), (4,))


def test_layer_norm_module_is_the_function():
    m = cm.nn.LayerNorm(5)
    m.weight.data[...] = rng.standard_normal(5)
    x = rng.standard_normal((2, 5))
    np.testing.assert_array_equal(m(x).data, F.layer_norm(cm.tensor(x), [5], m.weight, m.bias).data)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batch_norm_matches_torch_training_then_eval(shape):
    x, w, b = rng.standard_normal(shape), rng.standard_normal(3), rng.standard_normal(3)
    (cx, cw, cb), (tx, tw, tb) = both(x, w, b)
    c_mean, c_var = np.zeros(3), np.ones(3)
    t_mean, t_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    same(F.batch_norm(cx, c_mean, c_var, cw, cb, training=True, momentum=0.3),
         TF.batch_norm(tx, t_mean, t_var, tw, tb, training=True, momentum=0.3), (cx, cw, cb), (tx, tw, tb))
    np.testing.assert_allclose(c_mean, t_mean.numpy(), **TOL)   # updated in place, as torch's
    np.testing.assert_allclose(c_var, t_var.numpy(), **TOL)
    (cx, cw, cb), (tx, tw, tb) = both(x, w, b)
    same(F.batch_norm(cx, cm.tensor(c_mean), cm.tensor(c_var), cw, cb),
         TF.batch_norm(tx, t_mean, t_var, tw, tb), (cx, cw, cb), (tx, tw, tb))


def test_batch_norm_gradient_by_central_differences_and_refusals():
    def np_bn(x, w, b):
        c = x - x.mean(axis=0, keepdims=True)
        return c / np.sqrt((c * c).mean(axis=0, keepdims=True) + 1e-5) * w + b
    check_grad(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), np_bn,
               [rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal(3)])
    with pytest.raises(ValueError, match="more than 1 value per feature"):
        F.batch_norm(cm.tensor(np.ones((1, 3))), None, None, training=True)
    with pytest.raises(ValueError, match="running_mean and running_var"):
        F.batch_norm(cm.tensor(np.ones((4, 3))), None, None)


def test_batch_norm_module_still_matches_torchs_module():
    c, t = cm.nn.BatchNorm1d(3, momentum=None), torch.nn.BatchNorm1d(3, momentum=None, dtype=torch.float64)
    for _ in range(3):
        x = rng.standard_normal((5, 3))
        np.testing.assert_allclose(c(x).data, t(torch.tensor(x)).detach().numpy(), **TOL)
    for name, value in t.state_dict().items():
        np.testing.assert_allclose(np.asarray(c.state_dict()[name]), value.numpy(), **TOL)


def test_embedding_matches_torch_with_padding_idx():
    w = rng.standard_normal((6, 4))
    idx = np.array([[0, 2, 5], [2, 2, 1]])
    (cw,), (tw,) = both(w)
    same(F.embedding(idx, cw, padding_idx=-4), TF.embedding(torch.tensor(idx), tw, padding_idx=-4), (cw,), (tw,))
    assert not np.any(np.asarray(cw.grad)[2])   # the padding row gets no gradient
    check_grad(lambda w: F.embedding(idx, w), lambda w: w[idx], [w])
    with pytest.raises(NotImplementedError, match="max_norm"):
        F.embedding(idx, cw, max_norm=1.0)
    with pytest.raises(IndexError, match="0..5"):
        F.embedding([6], cw)


@pytest.mark.parametrize("amounts,value", [((1, 2), None), ((2, 0, 1, 3), 1.5), ((-1, 2, 0, -2), 0.0),
                                           ((1, 1, 0, 0, 2, 1), -2.0)])
def test_pad_matches_torch(amounts, value):
    x = rng.standard_normal((2, 3, 4))
    (cx,), (tx,) = both(x)
    t_value = 0.0 if value is None else value
    same(F.pad(cx, amounts, value=value), TF.pad(tx, amounts, value=t_value), (cx,), (tx,))


def test_pad_gradient_by_central_differences_and_refusals():
    check_grad(lambda x: F.pad(x, (0, 3, 1, -1)), lambda x: np.pad(x[:-1], ((1, 0), (0, 3))),
               [rng.standard_normal((3, 2))])
    with pytest.raises(NotImplementedError, match="constant"):
        F.pad(cm.tensor(np.ones((2, 2))), (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="even number"):
        F.pad(cm.tensor(np.ones((2, 2))), (1,))


def test_gelu_tanh_matches_torch_and_central_differences():
    x = np.linspace(-6, 6, 25).reshape(5, 5)
    (cx,), (tx,) = both(x)
    same(F.gelu(cx, approximate="tanh"), TF.gelu(tx, approximate="tanh"), (cx,), (tx,))
    (cx,), (tx,) = both(x)
    same(cm.nn.GELU(approximate="tanh")(cx), torch.nn.GELU(approximate="tanh")(tx), (cx,), (tx,))
    check_grad(lambda x: F.gelu(x, approximate="tanh"),
               lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), [x])
    # the exact form is still the derivative table's op, and differs from the approximation
    assert np.max(np.abs(F.gelu(cx).data - F.gelu(cx, approximate="tanh").data)) > 1e-5
    with pytest.raises(ValueError, match="'none' or 'tanh'"):
        cm.nn.GELU(approximate="fast")


def test_gelu_tanh_is_not_measured_as_the_exact_gelu():
    from calcml.debug import probes
    assert probes.activation_kind(cm.nn.GELU()) == "gelu"
    assert probes.activation_kind(cm.nn.GELU(approximate="tanh")) is None
    assert isinstance(cm.nn.GELU(approximate="tanh"), cm.nn.GELU)
    assert repr(cm.nn.GELU(approximate="tanh")) == "GELU(approximate='tanh')"


class Net(cm.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = cm.nn.Linear(3, 3)
        self.bn = cm.nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.lin(x))


def test_state_dict_values_are_detached_tensors_sharing_the_arrays():
    model = Net()
    state = model.state_dict()
    assert list(state) == ["lin.weight", "lin.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                           "bn.num_batches_tracked"]
    assert all(isinstance(v, cm.Tensor) and not v.requires_grad for v in state.values())
    assert state["lin.weight"].data is model.lin.weight.data   # PyTorch's share storage
    assert state["bn.num_batches_tracked"].dtype == np.int64
    snapshot = {k: v.clone() for k, v in state.items()}   # the PyTorch idiom for a copy
    model.train()(cm.tensor(rng.standard_normal((4, 3))))
    with cm.no_grad():
        model.lin.weight -= 1.0
    assert not np.array_equal(model.lin.weight.data, snapshot["lin.weight"].data)
    model.load_state_dict(snapshot)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.data, snapshot[k].data)


def test_state_dict_saves_loads_and_trains_on(tmp_path):
    model, other = Net(), Net()
    cm.save(model.state_dict(), tmp_path / "m.npz")
    other.load_state_dict(cm.load(tmp_path / "m.npz"))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(np.asarray(other.state_dict()[k]), np.asarray(v))
    opt = cm.optim.Adam(other.parameters(), lr=0.1)
    before = other.state_dict()["lin.weight"].clone()
    other.lin(cm.tensor(np.ones((2, 3)))).sum().backward()
    opt.step()
    assert not np.array_equal(before.data, other.lin.weight.data)
