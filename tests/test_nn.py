"""Modules, parameters and layers behave like PyTorch's."""
import numpy as np
import pytest

import calcml as cm


class Model(cm.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = cm.nn.Sequential(cm.nn.Linear(4, 8), cm.nn.ReLU(), cm.nn.Linear(8, 4), cm.nn.Tanh())
        self.head = cm.nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.head(self.layers(x))


def test_named_parameters_and_modules_use_dotted_names():
    m = Model()
    assert [n for n, _ in m.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias", "head.weight"]
    assert [n for n, _ in m.named_modules()] == [
        "", "layers", "layers.0", "layers.1", "layers.2", "layers.3", "head"]
    assert m.num_parameters() == 4 * 8 + 8 + 8 * 4 + 4 + 4 * 2
    assert all(isinstance(p, cm.nn.Parameter) and p.requires_grad for p in m.parameters())


def test_linear_is_x_times_w_transposed_plus_b():
    layer = cm.nn.Linear(3, 2)
    assert layer.weight.shape == (2, 3) and layer.bias.shape == (2,)
    x = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_allclose(layer(x).data, x @ layer.weight.data.T + layer.bias.data)


def test_parameters_get_their_names_on_the_first_call():
    m = Model()
    m(np.zeros((1, 4)))
    assert m.layers[0].weight.name == "layers.0.weight"
    assert m.layers[2]._scope == "layers.2"


def test_shape_error_names_the_layer_and_both_shapes():
    m = cm.nn.Sequential(cm.nn.Linear(16, 8), cm.nn.ReLU(), cm.nn.Linear(16, 4))
    with pytest.raises(ValueError) as info:
        m(np.zeros((32, 16)))
    assert str(info.value).startswith("2 (Linear): matmul (32, 8) @ (16, 4)")

    class Wrapped(cm.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = cm.nn.Sequential(cm.nn.Linear(4, 16), cm.nn.ReLU(), cm.nn.Linear(8, 4))

        def forward(self, x):
            return self.layers(x)

    with pytest.raises(ValueError, match=r"^layers\.2 \(Linear\): matmul \(32, 16\) @ \(8, 4\)"):
        Wrapped()(np.zeros((32, 4)))


def test_op_shape_error_inside_a_module_names_the_scope():
    class Bad(cm.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = cm.nn.Parameter(np.ones((3, 2)))

        def forward(self, x):
            return x @ self.w

    class Outer(cm.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Bad()

        def forward(self, x):
            return self.block(x)

    with pytest.raises(ValueError, match=r"^block \(Bad\): matmul \(5, 4\) @ \(3, 2\)"):
        Outer()(np.zeros((5, 4)))


def test_forgetting_super_init_is_explained():
    class Broken(cm.nn.Module):
        def __init__(self):
            self.fc = cm.nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Broken()


def test_sequential_indexing_slicing_iteration():
    layers = [cm.nn.Linear(2, 3), cm.nn.Sigmoid(), cm.nn.Linear(3, 1)]
    seq = cm.nn.Sequential(*layers)
    assert len(seq) == 3 and seq[0] is layers[0] and seq[-1] is layers[2]
    assert list(seq) == layers
    head = seq[:2]
    assert isinstance(head, cm.nn.Sequential) and len(head) == 2
    with pytest.raises(TypeError):
        cm.nn.Sequential(cm.nn.Linear(2, 2), "relu")


def test_state_dict_round_trip_and_shape_check():
    a, b = Model(), Model()
    state = a.state_dict()
    # detached tensors sharing the parameters' arrays, as PyTorch's share storage
    assert all(isinstance(v, cm.Tensor) and not v.requires_grad for v in state.values())
    snapshot = {k: v.clone() for k, v in state.items()}
    state["head.weight"].data[...] = 7.0
    assert np.all(a.head.weight.data == 7.0)
    assert not np.all(snapshot["head.weight"].data == 7.0)   # clone() copies
    a.load_state_dict(snapshot)
    np.testing.assert_array_equal(a.head.weight.data, snapshot["head.weight"].data)
    b.load_state_dict(a.state_dict())
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    bad = a.state_dict()
    bad["head.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="head.weight"):
        b.load_state_dict(bad)
    del bad["head.weight"]
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict(bad)


def test_parameter_data_is_assignable_in_place():
    layer = cm.nn.Linear(2, 2)
    ref = layer.weight.data
    layer.weight.data[...] = 1.5
    assert ref is layer.weight.data and np.all(layer(np.ones((1, 2))).data == 3.0 + layer.bias.data)


def test_train_eval_and_zero_grad():
    m = Model()
    assert m.training and m.layers[0].training
    m.eval()
    assert not m.training and not m.layers[0].training
    m.train()
    out = m(np.ones((3, 4))).sum()
    out.backward()
    assert m.head.weight.grad is not None
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_activation_modules_match_their_formulas():
    z = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(cm.nn.ReLU()(z).data, np.maximum(z, 0))
    np.testing.assert_allclose(cm.nn.Sigmoid()(z).data, 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(cm.nn.Tanh()(z).data, np.tanh(z))
    np.testing.assert_allclose(cm.nn.LeakyReLU(0.1)(z).data, np.where(z > 0, z, 0.1 * z))
    s = cm.nn.Softmax(dim=-1)(z.reshape(1, -1)).data
    np.testing.assert_allclose(s[0], np.exp(z) / np.exp(z).sum())
    assert cm.nn.Identity()(z) is z


def test_repr_shows_the_tree():
    text = repr(Model())
    assert "(layers): Sequential(" in text and "(0): Linear(in_features=4, out_features=8, bias=True)" in text
