"""cm.optim.lr_scheduler against torch.optim.lr_scheduler: the same model, data and schedule in
float64 in both, the rates (get_last_lr) every step and the weights at the end to 1e-10."""
import math
import warnings

import numpy as np
import pytest

import calcml as cm
from calcml.optim.lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, MultiStepLR, OneCycleLR,
                                       ReduceLROnPlateau, StepLR)

torch = pytest.importorskip("torch")

STEPS = 24
RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 3))
Y = RNG.normal(size=(16, 2))
W0 = RNG.normal(size=(3, 2))
B0 = RNG.normal(size=(2,))


def groups(lib, W, b, lrs):
    if lrs is None:
        return [W, b]
    return [{"params": [W], "lr": lrs[0]}, {"params": [b], "lr": lrs[1]}]


def run(lib, opt_name, opt_kw, sched_name, sched_kw, lrs=None, metrics=None, steps=STEPS):
    """Train `steps` steps with the scheduler stepped after each; return the rates and weights."""
    if lib == "cm":
        W, b = cm.tensor(W0.copy(), requires_grad=True), cm.tensor(B0.copy(), requires_grad=True)
        Xt, Yt, optim = cm.tensor(X), cm.tensor(Y), cm.optim
    else:
        W = torch.tensor(W0.copy(), dtype=torch.float64, requires_grad=True)
        b = torch.tensor(B0.copy(), dtype=torch.float64, requires_grad=True)
        Xt, Yt, optim = torch.tensor(X), torch.tensor(Y), torch.optim
    opt = getattr(optim, opt_name)(groups(lib, W, b, lrs), **opt_kw)
    sched = getattr(optim.lr_scheduler, sched_name)(opt, **sched_kw)
    seen = [list(sched.get_last_lr())]
    momenta = []
    for i in range(steps):
        opt.zero_grad()
        loss = ((Xt @ W + b - Yt) ** 2).mean()
        loss.backward()
        opt.step()
        if sched_name == "ReduceLROnPlateau":
            sched.step(metrics[i] if metrics is not None else loss.item())
        else:
            sched.step()
        seen.append(list(sched.get_last_lr()))
        group = opt.param_groups[0]
        momenta.append(group["betas"][0] if "betas" in group else group.get("momentum"))
    weights = [np.array(W.detach().numpy() if lib == "torch" else W.data),
               np.array(b.detach().numpy() if lib == "torch" else b.data)]
    return np.array(seen, dtype=float), weights, momenta


CASES = [
    ("SGD", {"lr": 0.1}, "StepLR", {"step_size": 5}, None),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, "StepLR", {"step_size": 3, "gamma": 0.5}, [0.1, 0.05]),
    ("Adam", {"lr": 0.05}, "MultiStepLR", {"milestones": [3, 7, 7, 15], "gamma": 0.3}, None),
    ("RMSprop", {"lr": 0.01}, "ExponentialLR", {"gamma": 0.9}, [0.01, 0.02]),
    ("SGD", {"lr": 0.1}, "CosineAnnealingLR", {"T_max": 5}, None),     # 24 steps: past two restarts
    ("Adam", {"lr": 0.05}, "CosineAnnealingLR", {"T_max": 10, "eta_min": 0.001}, [0.05, 0.01]),
    ("SGD", {"lr": 0.1}, "LambdaLR", {"lr_lambda": lambda e: 0.95 ** e / (1 + e)}, None),
    ("Adagrad", {"lr": 0.1}, "LambdaLR", {"lr_lambda": [lambda e: 1 / (1 + e), lambda e: 0.9 ** e]}, [0.1, 0.3]),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, "OneCycleLR", {"max_lr": 0.2, "total_steps": STEPS}, None),
    ("Adam", {"lr": 0.01}, "OneCycleLR", {"max_lr": [0.1, 0.05], "epochs": 4, "steps_per_epoch": 6,
                                          "pct_start": 0.25, "anneal_strategy": "linear"}, [0.01, 0.01]),
    ("AdamW", {"lr": 0.01}, "OneCycleLR", {"max_lr": 0.1, "total_steps": STEPS + 1, "three_phase": True,
                                           "div_factor": 10.0, "final_div_factor": 100.0}, None),
    ("SGD", {"lr": 0.1}, "OneCycleLR", {"max_lr": 0.3, "total_steps": STEPS, "cycle_momentum": False}, None),
    ("Adadelta", {}, "StepLR", {"step_size": 4, "gamma": 0.7}, None),
]


@pytest.mark.parametrize("opt_name, opt_kw, sched_name, sched_kw, lrs", CASES,
                         ids=[f"{c[2]}-{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rates_and_weights_match_torch(opt_name, opt_kw, sched_name, sched_kw, lrs):
    ours, w_ours, m_ours = run("cm", opt_name, opt_kw, sched_name, sched_kw, lrs)
    theirs, w_theirs, m_theirs = run("torch", opt_name, opt_kw, sched_name, sched_kw, lrs)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert len(set(np.round(ours[:, 0], 14))) > 1, "the schedule never changed the rate"
    for a, b in zip(w_ours, w_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.array(m_ours, dtype=float), np.array(m_theirs, dtype=float), rtol=1e-12)


PLATEAU_METRICS = [5, 4, 4, 4, 4, 3, 3, 3.0002, 3, 2.9999, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("kw", [
    {"patience": 2, "factor": 0.5},
    {"patience": 1, "factor": 0.5, "cooldown": 2, "min_lr": 0.02},
    {"patience": 1, "threshold": 0.1, "threshold_mode": "abs", "min_lr": [0.0, 0.03]},
    {"mode": "max", "patience": 0, "factor": 0.7},
    {"mode": "max", "patience": 1, "threshold_mode": "abs", "eps": 0.02},
])
def test_reduce_on_plateau_matches_torch(kw):
    ours, w_ours, _ = run("cm", "SGD", {"lr": 0.1}, "ReduceLROnPlateau", kw, [0.1, 0.05], PLATEAU_METRICS)
    theirs, w_theirs, _ = run("torch", "SGD", {"lr": 0.1}, "ReduceLROnPlateau", kw, [0.1, 0.05], PLATEAU_METRICS)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert ours[-1, 0] < ours[0, 0], "the plateau never reduced the rate"
    for a, b in zip(w_ours, w_theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_reduce_on_plateau_on_the_training_loss():
    ours, w_ours, _ = run("cm", "Adam", {"lr": 0.3}, "ReduceLROnPlateau", {"patience": 1}, steps=40)
    theirs, w_theirs, _ = run("torch", "Adam", {"lr": 0.3}, "ReduceLROnPlateau", {"patience": 1}, steps=40)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    np.testing.assert_allclose(w_ours[0], w_theirs[0], rtol=1e-10, atol=1e-12)


def sgd(lr=0.1, **kw):
    return cm.optim.SGD([cm.tensor([1.0, 2.0], requires_grad=True)], lr=lr, **kw)


def test_the_scheduler_writes_param_groups_and_records_initial_lr():
    opt = sgd()
    sched = StepLR(opt, step_size=1, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 0.1 and sched.base_lrs == [0.1]
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.05 == sched.get_last_lr()[0]
    opt.param_groups[0]["lr"] = 1.0   # chainable, as PyTorch: the next step starts from the rate set by hand
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.5


def test_scheduler_state_dict_resumes_the_schedule():
    opt_a = sgd()
    a = CosineAnnealingLR(opt_a, T_max=7, eta_min=0.01)
    for _ in range(4):
        a.step()
    state, opt_state = a.state_dict(), opt_a.state_dict()
    assert "optimizer" not in state
    opt_b = sgd(lr=0.7)
    b = CosineAnnealingLR(opt_b, T_max=7, eta_min=0.01)
    opt_b.load_state_dict(opt_state)
    b.load_state_dict(state)
    for _ in range(9):
        a.step()
        b.step()
        assert a.get_last_lr() == b.get_last_lr()


def test_lambda_state_dict_keeps_a_callable_objects_attributes():
    class Decay:
        def __init__(self):
            self.rate = 0.5

        def __call__(self, epoch):
            return self.rate ** epoch

    decay = Decay()
    sched = LambdaLR(sgd(), decay)
    decay.rate = 0.25
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"rate": 0.25}]
    other = Decay()
    LambdaLR(sgd(), other).load_state_dict(state)
    assert other.rate == 0.25
    assert LambdaLR(sgd(), lambda e: 1.0).state_dict()["lr_lambdas"] == [None]


def test_the_deprecated_epoch_argument_uses_the_closed_form():
    opt = sgd()
    sched = MultiStepLR(opt, milestones=[2, 4])
    with pytest.warns(UserWarning, match="deprecated"):
        sched.step(5)
    assert math.isclose(opt.param_groups[0]["lr"], 0.1 * 0.1 ** 2)
    with pytest.warns(UserWarning):
        ExponentialLR(opt, gamma=0.5).step(3)


def test_errors_say_what_is_wrong():
    with pytest.raises(TypeError, match="is not an Optimizer"):
        StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(sgd(), step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="Expected 1 lr_lambdas, but got 2"):
        LambdaLR(sgd(), [lambda e: 1, lambda e: 1])
    with pytest.raises(TypeError, match="lr_lambda should be a function"):
        LambdaLR(sgd(), 0.5)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        ReduceLROnPlateau(sgd(), factor=1.0)
    with pytest.raises(ValueError, match="mode 'best' is unknown"):
        ReduceLROnPlateau(sgd(), mode="best")
    with pytest.raises(ValueError, match="either total_steps OR"):
        OneCycleLR(sgd(), max_lr=0.1)
    with pytest.raises(ValueError, match="momentum or beta1"):
        OneCycleLR(cm.optim.Adagrad([cm.tensor([1.0], requires_grad=True)]), max_lr=0.1, total_steps=5)
    sched = OneCycleLR(sgd(momentum=0.9), max_lr=0.1, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        sched.step()


def test_reachable_as_torch_spells_it():
    import calcml.optim.lr_scheduler as module
    assert cm.optim.lr_scheduler is module
    assert module.StepLR is StepLR
    assert issubclass(ReduceLROnPlateau, module.LRScheduler)
