"""cm.optim against PyTorch's update rules, recomputed by hand with plain numpy."""
import numpy as np
import pytest

import calcml as cm
from calcml import optim

THETA0 = np.array([0.5, -1.2, 2.0])
# A different gradient on each of the three steps (signs and sizes vary per element).
GRADS = [np.array([0.3, -1.5, 2.0]), np.array([-0.7, 0.4, 1.1]), np.array([0.2, 2.5, -0.6])]
TOL = 1e-12


def run(opt_cls, grads=GRADS, **kwargs):
    """Apply the optimiser for len(grads) steps; return theta after each step."""
    p = cm.nn.Parameter(THETA0.copy())
    opt = opt_cls([p], **kwargs)
    out = []
    for g in grads:
        p.grad = g.copy()
        opt.step()
        out.append(p.data.copy())
    return out


def check(got, expected):
    assert len(got) == len(expected)
    for t, (a, b) in enumerate(zip(got, expected), start=1):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL, err_msg=f"step {t}")


# -- SGD ----------------------------------------------------------------------------------
def test_sgd_plain():
    lr = 0.1
    theta, expected = THETA0.copy(), []
    for g in GRADS:
        theta = theta - lr * g
        expected.append(theta)
    check(run(optim.SGD, lr=lr), expected)


def test_sgd_default_lr_is_0_01():
    check(run(optim.SGD, grads=GRADS[:1]), [THETA0 - 0.01 * GRADS[0]])


def test_sgd_momentum_with_dampening():
    lr, mu, tau = 0.1, 0.9, 0.3
    theta, buf, expected = THETA0.copy(), None, []
    for g in GRADS:
        buf = g.copy() if buf is None else mu * buf + (1 - tau) * g  # no dampening on step 1
        theta = theta - lr * buf
        expected.append(theta)
    check(run(optim.SGD, lr=lr, momentum=mu, dampening=tau), expected)


def test_sgd_nesterov():
    lr, mu = 0.1, 0.9
    theta, buf, expected = THETA0.copy(), None, []
    for g in GRADS:
        buf = g.copy() if buf is None else mu * buf + g
        theta = theta - lr * (g + mu * buf)
        expected.append(theta)
    got = run(optim.SGD, lr=lr, momentum=mu, nesterov=True)
    check(got, expected)
    assert not np.allclose(got[-1], run(optim.SGD, lr=lr, momentum=mu)[-1])


def test_sgd_weight_decay():
    lr, wd = 0.1, 0.05
    theta, expected = THETA0.copy(), []
    for g in GRADS:
        theta = theta - lr * (g + wd * theta)
        expected.append(theta)
    check(run(optim.SGD, lr=lr, weight_decay=wd), expected)


# -- Adagrad ------------------------------------------------------------------------------
def test_adagrad():
    lr, eps = 0.1, 1e-10
    theta, s, expected = THETA0.copy(), np.zeros(3), []
    for g in GRADS:
        s = s + g ** 2
        theta = theta - lr * g / (np.sqrt(s) + eps)
        expected.append(theta)
    check(run(optim.Adagrad, lr=lr), expected)


def test_adagrad_lr_decay_weight_decay_initial_accumulator():
    lr, decay, wd, s0, eps = 0.1, 0.5, 0.05, 0.2, 1e-6
    theta, s, expected = THETA0.copy(), np.full(3, s0), []
    for t, g in enumerate(GRADS, start=1):
        g = g + wd * theta
        clr = lr / (1 + (t - 1) * decay)
        s = s + g ** 2
        theta = theta - clr * g / (np.sqrt(s) + eps)
        expected.append(theta)
    check(run(optim.Adagrad, lr=lr, lr_decay=decay, weight_decay=wd,
              initial_accumulator_value=s0, eps=eps), expected)


# -- RMSprop ------------------------------------------------------------------------------
def rmsprop_by_hand(lr, alpha, eps, wd=0.0, mu=0.0, centered=False):
    theta, v, gbar, buf, expected = THETA0.copy(), np.zeros(3), np.zeros(3), np.zeros(3), []
    for g in GRADS:
        g = g + wd * theta
        v = alpha * v + (1 - alpha) * g ** 2
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            d = np.sqrt(v - gbar ** 2) + eps
        else:
            d = np.sqrt(v) + eps
        if mu > 0:
            buf = mu * buf + g / d
            theta = theta - lr * buf
        else:
            theta = theta - lr * g / d
        expected.append(theta)
    return expected


def test_rmsprop_plain_defaults():
    check(run(optim.RMSprop), rmsprop_by_hand(lr=0.01, alpha=0.99, eps=1e-8))


def test_rmsprop_centered():
    got = run(optim.RMSprop, lr=0.05, alpha=0.9, centered=True)
    check(got, rmsprop_by_hand(lr=0.05, alpha=0.9, eps=1e-8, centered=True))
    assert not np.allclose(got[-1], run(optim.RMSprop, lr=0.05, alpha=0.9)[-1])


def test_rmsprop_momentum_and_weight_decay():
    got = run(optim.RMSprop, lr=0.05, alpha=0.9, momentum=0.8, weight_decay=0.1)
    check(got, rmsprop_by_hand(lr=0.05, alpha=0.9, eps=1e-8, wd=0.1, mu=0.8))


def test_rmsprop_centered_with_momentum():
    got = run(optim.RMSprop, lr=0.05, alpha=0.9, momentum=0.8, centered=True)
    check(got, rmsprop_by_hand(lr=0.05, alpha=0.9, eps=1e-8, mu=0.8, centered=True))


# -- Adam / AdamW -------------------------------------------------------------------------
def adam_by_hand(lr, b1, b2, eps, wd=0.0, amsgrad=False, grads=GRADS):
    theta, m, v, vmax, expected = THETA0.copy(), np.zeros(3), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(grads, start=1):
        g = g + wd * theta  # Adam's weight decay is L2 added to the gradient
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        expected.append(theta)
    return expected


def test_adam_defaults():
    check(run(optim.Adam), adam_by_hand(lr=0.001, b1=0.9, b2=0.999, eps=1e-8))


def test_adam_custom_betas_and_weight_decay():
    got = run(optim.Adam, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    check(got, adam_by_hand(lr=0.01, b1=0.8, b2=0.95, eps=1e-6, wd=0.1))


def test_adam_bias_correction_first_step_moves_by_lr():
    lr, g = 0.01, np.array([1e-3, -5.0, 200.0])  # sizes differ by 10^5; steps should not
    p = cm.nn.Parameter(THETA0.copy())
    opt = optim.Adam([p], lr=lr)
    p.grad = g.copy()
    opt.step()
    step = p.data - THETA0
    # m̂ = g, v̂ = g², so Δθ = −η·g/(|g| + ε) ≈ −η·sign(g) (without correction it would be ≈ −η·0.1/√0.001)
    np.testing.assert_allclose(step, -lr * np.sign(g), rtol=1e-4)
    # constant gradient: each further step is also ≈ η
    for _ in range(2):
        before = p.data.copy()
        p.grad = g.copy()
        opt.step()
        np.testing.assert_allclose(p.data - before, -lr * np.sign(g), rtol=1e-4)


def test_adam_amsgrad():
    # a large gradient then small ones, so v falls below its maximum and amsgrad matters
    grads = [np.array([3.0, -2.0, 1.0]), np.array([0.01, 0.02, -0.01]), np.array([0.05, -0.01, 0.02])]
    got = run(optim.Adam, grads=grads, lr=0.01, betas=(0.9, 0.99), amsgrad=True)
    check(got, adam_by_hand(lr=0.01, b1=0.9, b2=0.99, eps=1e-8, amsgrad=True, grads=grads))
    plain = run(optim.Adam, grads=grads, lr=0.01, betas=(0.9, 0.99))
    assert not np.allclose(got[-1], plain[-1])


def adamw_by_hand(lr, b1, b2, eps, wd, amsgrad=False):
    theta, m, v, vmax, expected = THETA0.copy(), np.zeros(3), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(GRADS, start=1):
        theta = theta * (1 - lr * wd)  # decoupled: shrink θ, leave g alone
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        expected.append(theta)
    return expected


def test_adamw_defaults():
    check(run(optim.AdamW), adamw_by_hand(lr=0.001, b1=0.9, b2=0.999, eps=1e-8, wd=0.01))


def test_adamw_amsgrad():
    got = run(optim.AdamW, lr=0.05, weight_decay=0.2, amsgrad=True)
    check(got, adamw_by_hand(lr=0.05, b1=0.9, b2=0.999, eps=1e-8, wd=0.2, amsgrad=True))


def test_adamw_decay_differs_from_adam_weight_decay():
    kwargs = dict(lr=0.05, weight_decay=0.2)
    adamw, adam = run(optim.AdamW, **kwargs), run(optim.Adam, **kwargs)
    assert not np.allclose(adamw[-1], adam[-1], rtol=0, atol=1e-6)
    # and AdamW with weight_decay=0 is exactly Adam
    check(run(optim.AdamW, lr=0.05, weight_decay=0), run(optim.Adam, lr=0.05))


# -- effective_lr ---------------------------------------------------------------------------
def test_effective_lr_adam():
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-8
    p = cm.nn.Parameter(THETA0.copy())
    opt = optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps)
    assert opt.effective_lr(p) is None
    m, v = np.zeros(3), np.zeros(3)
    for t, g in enumerate(GRADS[:2], start=1):
        p.grad = g.copy()
        before = p.data.copy()
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
    eff = lr / (np.sqrt(v / (1 - b2 ** 2)) + eps)
    np.testing.assert_allclose(opt.effective_lr(p), eff, rtol=1e-12)
    # the last step applied was effective_lr · m̂
    np.testing.assert_allclose(before - p.data, eff * m / (1 - b1 ** 2), rtol=0, atol=TOL)
    with pytest.raises(ValueError):
        opt.effective_lr(cm.nn.Parameter(np.zeros(3)))


def test_effective_lr_rmsprop_and_adagrad():
    p, q = cm.nn.Parameter(THETA0.copy()), cm.nn.Parameter(THETA0.copy())
    rms, ada = optim.RMSprop([p], lr=0.05, alpha=0.9), optim.Adagrad([q], lr=0.1, lr_decay=0.5)
    assert rms.effective_lr(p) is None and ada.effective_lr(q) is None
    for g in GRADS[:2]:
        p.grad, q.grad = g.copy(), g.copy()
        rms.step()
        ada.step()
    v = 0.9 * (0.1 * GRADS[0] ** 2) + 0.1 * GRADS[1] ** 2
    np.testing.assert_allclose(rms.effective_lr(p), 0.05 / (np.sqrt(v) + 1e-8), rtol=1e-12)
    s = GRADS[0] ** 2 + GRADS[1] ** 2
    np.testing.assert_allclose(ada.effective_lr(q), (0.1 / 1.5) / (np.sqrt(s) + 1e-10), rtol=1e-12)


# -- the Optimizer machinery -----------------------------------------------------------------
def test_lr_change_between_steps_takes_effect():
    p = cm.nn.Parameter(THETA0.copy())
    opt = optim.SGD([p], lr=0.1)
    expected = THETA0.copy()
    for lr, g in zip([0.1, 0.5, 0.02], GRADS):
        opt.param_groups[0]["lr"] = lr
        p.grad = g.copy()
        opt.step()
        expected = expected - lr * g
        np.testing.assert_allclose(p.data, expected, rtol=0, atol=TOL)


def test_lr_change_adam():
    p = cm.nn.Parameter(THETA0.copy())
    opt = optim.Adam([p], lr=0.1)
    theta, m, v = THETA0.copy(), np.zeros(3), np.zeros(3)
    for t, (lr, g) in enumerate(zip([0.1, 0.01, 0.3], GRADS), start=1):
        opt.param_groups[0]["lr"] = lr
        p.grad = g.copy()
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g ** 2
        theta = theta - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(p.data, theta, rtol=0, atol=TOL)


def test_param_groups_with_different_lrs():
    a, b = cm.nn.Parameter(THETA0.copy()), cm.nn.Parameter(-THETA0)
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[1]["momentum"] == 0.9
    a.grad, b.grad = GRADS[0].copy(), GRADS[1].copy()
    opt.step()
    np.testing.assert_allclose(a.data, THETA0 - 0.1 * GRADS[0], rtol=0, atol=TOL)
    np.testing.assert_allclose(b.data, -THETA0 - 0.5 * GRADS[1], rtol=0, atol=TOL)
    assert "momentum_buffer" not in opt.state[a] and "momentum_buffer" in opt.state[b]


def test_module_parameters():
    model = cm.nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]


def test_zero_grad():
    a, b = cm.nn.Parameter(THETA0.copy()), cm.nn.Parameter(THETA0.copy())
    opt = optim.Adam([a, b])
    a.grad, b.grad = GRADS[0].copy(), GRADS[1].copy()
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    a.grad = GRADS[0].copy()
    opt.zero_grad(set_to_none=False)
    assert np.array_equal(a.grad, np.zeros(3)) and b.grad is None


def test_step_with_closure():
    target = np.array([1.0, -2.0, 3.0])
    w = cm.nn.Parameter(THETA0.copy())
    opt = optim.SGD([w], lr=0.1)
    w.grad = np.full(3, 1e6)  # stale: the closure must replace it
    losses = []

    def closure():
        opt.zero_grad()
        loss = ((w - cm.tensor(target)) ** 2).sum()
        loss.backward()
        losses.append(loss)
        return loss

    returned = opt.step(closure)
    assert returned is losses[0]
    assert returned.item() == pytest.approx(np.sum((THETA0 - target) ** 2))
    np.testing.assert_allclose(w.data, THETA0 - 0.1 * 2 * (THETA0 - target), rtol=0, atol=TOL)
    assert optim.SGD([w]).step() is None


ALL = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.Adagrad, dict(lr=0.1, weight_decay=0.1)),
    (optim.RMSprop, dict(momentum=0.5, centered=True, weight_decay=0.1)),
    (optim.Adam, dict(amsgrad=True, weight_decay=0.1)),
    (optim.AdamW, dict(amsgrad=True)),
]
IDS = ["sgd-momentum", "sgd-nesterov", "adagrad", "rmsprop", "adam", "adamw"]


@pytest.mark.parametrize("cls, kwargs", ALL, ids=IDS)
def test_parameters_without_grad_are_skipped(cls, kwargs):
    a, b = cm.nn.Parameter(THETA0.copy()), cm.nn.Parameter(THETA0.copy())
    opt = cls([a, b], **kwargs)
    a.grad = GRADS[0].copy()
    opt.step()
    assert not np.allclose(a.data, THETA0)
    assert np.array_equal(b.data, THETA0)  # not even weight decay touches it
    assert b not in opt.state


@pytest.mark.parametrize("cls, kwargs", ALL, ids=IDS)
def test_float32_stays_float32_and_updates_in_place(cls, kwargs):
    p = cm.nn.Parameter(THETA0, dtype=np.float32)
    array = p.data
    opt = cls([p], **kwargs)
    for i, g in enumerate(GRADS):
        # a float64 gradient set by hand must not promote the parameter either
        p.grad = g.astype(np.float32) if i % 2 else g.copy()
        opt.step()
    assert p.data is array and p.data.dtype == np.float32
    for value in opt.state[p].values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32
    # float32 rounding only: same trajectory as float64
    expected = run(cls, **kwargs)[-1]
    np.testing.assert_allclose(p.data, expected, rtol=1e-4, atol=1e-5)


def test_grad_is_not_modified():
    p = cm.nn.Parameter(THETA0.copy())
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    g = GRADS[0].copy()
    for _ in range(3):
        p.grad = g
        opt.step()
        assert np.array_equal(g, GRADS[0])


@pytest.mark.parametrize("cls, kwargs", [
    (optim.SGD, dict(lr=-0.1)),
    (optim.SGD, dict(lr=float("nan"))),
    (optim.SGD, dict(momentum=-0.5)),
    (optim.SGD, dict(weight_decay=-1)),
    (optim.SGD, dict(nesterov=True)),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1)),
    (optim.Adagrad, dict(lr=-1)),
    (optim.Adagrad, dict(lr_decay=-1)),
    (optim.Adagrad, dict(initial_accumulator_value=-1)),
    (optim.Adagrad, dict(eps=-1)),
    (optim.RMSprop, dict(alpha=-0.1)),
    (optim.RMSprop, dict(eps=-1)),
    (optim.RMSprop, dict(momentum=-1)),
    (optim.Adam, dict(lr=-1)),
    (optim.Adam, dict(betas=(1.0, 0.999))),
    (optim.Adam, dict(betas=(0.9, -0.1))),
    (optim.Adam, dict(betas=(0.9,))),
    (optim.Adam, dict(eps=-1e-8)),
    (optim.AdamW, dict(weight_decay=-0.01)),
])
def test_invalid_hyperparameters_raise(cls, kwargs):
    with pytest.raises(ValueError):
        cls([cm.nn.Parameter(THETA0.copy())], **kwargs)


def test_invalid_group_hyperparameter_raises():
    p = cm.nn.Parameter(THETA0.copy())
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([{"params": [p], "lr": -1}])


def test_bad_params_raise_type_error():
    with pytest.raises(TypeError, match="empty"):
        optim.SGD([])
    model = cm.nn.Linear(2, 2)
    params = model.parameters()
    optim.SGD(params)
    with pytest.raises(TypeError, match="empty"):  # the generator is used up
        optim.SGD(params)
    with pytest.raises(TypeError):
        optim.SGD([np.zeros(3)])
    with pytest.raises(TypeError):
        optim.SGD(cm.nn.Parameter(THETA0.copy()))  # a Tensor, not an iterable of them
    p = cm.nn.Parameter(THETA0.copy())
    with pytest.raises(ValueError):
        optim.SGD([p, p])
    with pytest.raises(ValueError):
        optim.SGD([(p * 2)])  # non-leaf


# -- end to end -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, lr, steps", [(optim.SGD, 0.1, 50), (optim.Adam, 0.1, 300)])
def test_reduces_quadratic_loss(cls, lr, steps):
    target = cm.tensor([1.0, -2.0, 3.0])
    w = cm.nn.Parameter(np.zeros(3))
    opt = cls([w], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((w - target) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(w.data, target.data, atol=0.05)
