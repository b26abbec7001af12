"""Adadelta against torch.optim.Adadelta, and optimizer.state_dict()/load_state_dict(): resuming from a
saved state (in memory or through cm.save/cm.load) gives exactly the uninterrupted run."""
import numpy as np
import pytest

import calcml as cm

RNG = np.random.default_rng(1)
X = RNG.normal(size=(12, 3))
Y = RNG.normal(size=(12, 2))
W0 = RNG.normal(size=(3, 2))
B0 = RNG.normal(size=(2,))

OPTIMISERS = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "dampening": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True}),
    ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01}),
    ("AdamW", {"lr": 0.05, "betas": (0.8, 0.99)}),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(OPTIMISERS)]


def model(W=W0, B=B0):
    return cm.tensor(W.copy(), requires_grad=True), cm.tensor(B.copy(), requires_grad=True)


def train(opt, W, b, steps):
    for _ in range(steps):
        opt.zero_grad()
        ((cm.tensor(X) @ W + b - cm.tensor(Y)) ** 2).mean().backward()
        opt.step()


def make(name, kw, W, b):
    # two groups, so the state dict's numbering across groups is exercised
    return getattr(cm.optim, name)([{"params": [W]}, {"params": [b], "lr": 0.02}], **kw)


@pytest.mark.parametrize("name, kw", OPTIMISERS, ids=IDS)
@pytest.mark.parametrize("through_file", [False, True], ids=["in-memory", "cm.save"])
def test_resuming_from_a_state_dict_is_the_uninterrupted_run(name, kw, through_file, tmp_path):
    W, b = model()
    opt = make(name, kw, W, b)
    train(opt, W, b, 7)
    state = opt.state_dict()
    W_mid, b_mid = W.data.copy(), b.data.copy()
    if through_file:
        cm.save({"optimizer": state, "W": W, "b": b}, tmp_path / "ckpt.npz")
        loaded = cm.load(tmp_path / "ckpt.npz")
        state, W_mid, b_mid = loaded["optimizer"], loaded["W"].data, loaded["b"].data
    train(opt, W, b, 8)

    W2, b2 = model(W_mid, b_mid)
    opt2 = make(name, {}, W2, b2)   # the defaults: the loaded hyper-parameters must replace them
    opt2.load_state_dict(state)
    train(opt2, W2, b2, 8)
    np.testing.assert_array_equal(W2.data, W.data)
    np.testing.assert_array_equal(b2.data, b.data)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


def test_the_state_dict_is_a_snapshot_and_loading_copies_it():
    W, b = model()
    opt = make("Adam", {}, W, b)
    train(opt, W, b, 2)
    state = opt.state_dict()
    before = state["state"][0]["exp_avg"].copy()
    train(opt, W, b, 2)
    np.testing.assert_array_equal(state["state"][0]["exp_avg"], before)
    W2, b2 = model()
    opt2 = make("Adam", {}, W2, b2)
    opt2.load_state_dict(state)
    train(opt2, W2, b2, 2)
    np.testing.assert_array_equal(state["state"][0]["exp_avg"], before)
    assert state["state"][0]["step"] == 2


def test_float32_parameters_get_float32_state():
    W = cm.tensor(W0, dtype=cm.float32, requires_grad=True)
    opt = cm.optim.Adam([W])
    state = {"state": {0: {"step": 3, "exp_avg": np.ones((3, 2)), "exp_avg_sq": np.ones((3, 2))}},
             "param_groups": [{**opt.state_dict()["param_groups"][0]}]}
    opt.load_state_dict(state)
    assert opt.state[W]["exp_avg"].dtype == np.float32


def test_load_state_dict_refuses_what_does_not_fit():
    W, b = model()
    opt = make("Adam", {}, W, b)
    train(opt, W, b, 1)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        cm.optim.Adam([W, b]).load_state_dict(state)
    with pytest.raises(ValueError, match="doesn't match the size"):
        cm.optim.Adam([{"params": [W, b]}, {"params": [cm.tensor([1.0], requires_grad=True)]}]).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks 'momentum'.*another kind of optimiser than SGD"):
        make("SGD", {}, W, b).load_state_dict(state)
    with pytest.raises(ValueError, match="has shape"):
        Wt, bt = cm.tensor(np.ones((2, 3)), requires_grad=True), cm.tensor(np.ones(2), requires_grad=True)
        make("Adam", {}, Wt, bt).load_state_dict(state)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"W": W})


def test_adadelta_validates_like_torch():
    p = [cm.tensor([1.0], requires_grad=True)]
    for kw, match in (({"lr": -1}, "learning rate"), ({"rho": 1.5}, "rho"), ({"eps": -1}, "epsilon"),
                      ({"weight_decay": -1}, "weight_decay")):
        with pytest.raises(ValueError, match=match):
            cm.optim.Adadelta(p, **kw)


# ---- against torch -------------------------------------------------------------------------------

def torch_run(torch, name, kw, steps):
    W = torch.tensor(W0.copy(), requires_grad=True)
    b = torch.tensor(B0.copy(), requires_grad=True)
    opt = getattr(torch.optim, name)([{"params": [W]}, {"params": [b], "lr": 0.02}], **kw)
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    for _ in range(steps):
        opt.zero_grad()
        ((Xt @ W + b - Yt) ** 2).mean().backward()
        opt.step()
    return opt, W, b


@pytest.mark.parametrize("name, kw", OPTIMISERS, ids=IDS)
def test_weights_and_state_match_torch(name, kw):
    torch = pytest.importorskip("torch")
    t_opt, tW, tb = torch_run(torch, name, kw, 15)
    W, b = model()
    opt = make(name, kw, W, b)
    train(opt, W, b, 15)
    np.testing.assert_allclose(W.data, tW.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.data, tb.detach().numpy(), rtol=1e-10, atol=1e-12)
    ours, theirs = opt.state_dict(), t_opt.state_dict()
    assert ours["state"].keys() == theirs["state"].keys()
    for i in ours["state"]:
        assert ours["state"][i].keys() == theirs["state"][i].keys()
        for key, value in ours["state"][i].items():
            np.testing.assert_allclose(np.asarray(value, dtype=float), theirs["state"][i][key].numpy(),
                                       rtol=1e-10, atol=1e-14)
    for g_ours, g_theirs in zip(ours["param_groups"], theirs["param_groups"]):
        assert g_ours["params"] == g_theirs["params"]
        for key, value in g_ours.items():
            assert g_theirs[key] == value, key


def test_adadelta_defaults_are_torchs():
    torch = pytest.importorskip("torch")
    import inspect
    ours = inspect.signature(cm.optim.Adadelta).parameters
    theirs = inspect.signature(torch.optim.Adadelta).parameters
    for name in ("lr", "rho", "eps", "weight_decay"):
        assert ours[name].default == theirs[name].default, name
