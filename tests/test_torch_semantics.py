"""Where PyTorch code would run and silently do something else, the engine now means what PyTorch
means: in-place updates, `.grad` as a Tensor, transpose(d0, d1), max/min(dim) -> (values,
indices) and elementwise comparisons. Engine-only checks always run; the comparisons with torch
itself skip without it."""
from __future__ import annotations

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from fd import check_grad, numeric_hvp


def _torch():
    return pytest.importorskip("torch")


# -- in-place operators and methods -------------------------------------------------------------

def test_inplace_operators_update_the_tensor_itself():
    t = cm.tensor([1.0, 2.0, 3.0])
    array, same = t.data, t
    t -= 1.0
    t += cm.tensor([1.0, 1.0, 1.0])
    t *= 2
    t /= 4
    assert t is same and t.data is array
    np.testing.assert_array_equal(t.data, [0.5, 1.0, 1.5])
    t.add_(cm.tensor([1.0, 1.0, 1.0]), alpha=2).mul_(2).sub_(1.0)
    np.testing.assert_array_equal(t.data, [4.0, 5.0, 6.0])
    assert t.clamp_(min=4.5, max=5.5) is t and t.tolist() == [4.5, 5.0, 5.5]
    assert t.copy_(np.array([7.0, 8.0, 9.0])).tolist() == [7.0, 8.0, 9.0]
    assert t.fill_(3).tolist() == [3.0, 3.0, 3.0] and t.zero_().tolist() == [0.0, 0.0, 0.0]
    assert t.data is array


def test_float32_inplace_stays_float32():
    t = cm.tensor([1.0, 2.0], dtype=np.float32)
    t -= np.array([0.5, 0.5])   # a float64 operand is cast into the float32 storage
    assert t.dtype == np.float32 and t.tolist() == [0.5, 1.5]


def test_inplace_on_a_leaf_that_requires_grad_needs_no_grad():
    w = cm.tensor([1.0, 2.0], requires_grad=True)
    for update in (lambda: w.__isub__(1.0), lambda: w.zero_(), lambda: w.add_(1.0), lambda: w.mul_(2.0),
                   lambda: w.copy_([0.0, 0.0]), lambda: w.fill_(1.0), lambda: w.clamp_(0, 1)):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad.*no_grad"):
            update()
    assert w.tolist() == [1.0, 2.0]
    with cm.no_grad():
        w -= 0.5
    assert w.tolist() == [0.5, 1.5] and w.requires_grad and w.is_leaf


def test_inplace_on_a_graph_tensor_is_refused_with_the_fix():
    w = cm.tensor([1.0, 2.0], requires_grad=True)
    h = w * 2
    with pytest.raises(RuntimeError, match="part of a graph.*h = h \\+ x"):
        h += 1.0


def test_the_update_reaches_the_array_an_optimizer_holds():
    model = cm.nn.Linear(3, 2)
    opt = cm.optim.SGD(model.parameters(), lr=0.1)
    held = [p.data for p in opt.param_groups[0]["params"]]
    with cm.no_grad():
        for p in model.parameters():
            p -= 1.0
    for p, d in zip(model.parameters(), held):
        assert p.data is d


# -- .grad is a Tensor ---------------------------------------------------------------------------

def test_grad_is_a_tensor_that_numpy_reads():
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    g = x.grad
    assert isinstance(g, cm.Tensor) and not g.requires_grad and g is x.grad
    assert np.asarray(g) is g.data and g.numpy() is g.data and g.data.tolist() == [2.0, 4.0]
    np.testing.assert_array_equal(g, [2.0, 4.0])
    assert np.isfinite(g).all() and isinstance(np.isfinite(g), np.ndarray)
    assert float(g[1]) == 4.0 and g.shape == (2,) and g.dtype == np.float64


def test_grad_zero_and_set_to_none():
    model = cm.nn.Linear(2, 1)
    opt = cm.optim.SGD(model.parameters(), lr=0.1)
    F.mse_loss(model(np.ones((3, 2))), np.zeros((3, 1))).backward()
    w = model.weight
    assert w.grad.zero_() is w.grad and np.all(w.grad.data == 0)
    F.mse_loss(model(np.ones((3, 2))), np.zeros((3, 1))).backward()
    opt.zero_grad(set_to_none=False)
    assert w.grad is not None and not w.grad.data.any()
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())


def test_the_old_data_idiom_still_updates():
    w = cm.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    w.data -= 0.25 * w.grad.data
    np.testing.assert_array_equal(w.data, [0.5, 1.0])
    w.data -= 0.5 * w.grad   # a Tensor on the right of a numpy in-place op
    np.testing.assert_array_equal(w.data, [-0.5, -1.0])


def test_a_numpy_array_assigned_to_grad_is_wrapped():
    w = cm.tensor([1.0, 2.0], requires_grad=True)
    w.grad = np.array([3.0, 4.0])
    assert isinstance(w.grad, cm.Tensor) and w.grad.tolist() == [3.0, 4.0]
    with pytest.raises(RuntimeError, match="shape"):
        w.grad = np.zeros(3)


# -- transpose, max/min(dim), comparisons ---------------------------------------------------------

def test_transpose_swaps_two_dims():
    x = cm.tensor(np.arange(6.0).reshape(2, 3))
    assert x.transpose(0, 1).shape == (3, 2) and x.transpose(1, 0).shape == (3, 2)
    np.testing.assert_array_equal(x.transpose(0, 1).data, x.data.T)
    y = cm.tensor(np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(y.transpose(-2, -1).data, np.swapaxes(y.data, -2, -1))
    np.testing.assert_array_equal(y.transpose(2, 0, 1).data, y.data.transpose(2, 0, 1))  # a permutation
    np.testing.assert_array_equal(y.permute(1, 2, 0).data, y.data.transpose(1, 2, 0))


def test_max_min_with_dim_give_values_and_indices():
    x = cm.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    v, i = x.max(1)
    assert v.tolist() == [5.0, 7.0] and i.tolist() == [1, 0] and i.dtype == np.int64
    r = x.min(dim=0, keepdim=True)
    assert r.values.tolist() == [[1.0, 0.0, 2.0]] and r.indices.tolist() == [[0, 1, 0]]
    assert x.max().item() == 7.0 and x.max().shape == () and x.min().item() == 0.0
    assert x.max(axis=1, keepdims=True).shape == (2, 1)   # numpy's spelling: the maxima only
    assert x.argmax(1).tolist() == [1, 0] and x.argmin().item() == 4


def test_max_dim_gradient_goes_to_the_arg_max_entry_only():
    x = cm.tensor([[3.0, 3.0, 1.0]], requires_grad=True)
    x.max(1).values.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0, 0.0]]   # PyTorch's: the tie is not split


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dim,keepdim", [(0, False), (1, True), (-1, False)])
def test_max_min_dim_gradient_matches_central_differences(name, dim, keepdim):
    x = np.random.default_rng(3).standard_normal((4, 5))   # no ties: differentiable everywhere
    np_fn = {"max": np.max, "min": np.min}[name]
    check_grad(lambda t: getattr(t, name)(dim, keepdim).values * 1.5,
               lambda a: np_fn(a, axis=dim, keepdims=keepdim) * 1.5, [x])


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_dim_double_backward_matches_differences(name):
    x = np.random.default_rng(4).standard_normal((3, 4))
    v = np.random.default_rng(5).standard_normal((3, 4))
    xt = cm.tensor(x, requires_grad=True)
    (g,) = cm.grad((getattr(xt, name)(1).values ** 3).sum(), [xt], create_graph=True)
    (hv,) = cm.grad((g * cm.tensor(v)).sum(), [xt])
    (expected,) = numeric_hvp(lambda t: (getattr(t, name)(1).values ** 3).sum(), [x], [v])
    np.testing.assert_allclose(hv.data, expected, atol=1e-6)


def test_comparisons_are_elementwise_bool_tensors():
    pred = cm.tensor([1.0, 2.0, 3.0, 4.0])
    y = cm.tensor([1.0, 0.0, 3.0, 0.0])
    eq = pred == y
    assert isinstance(eq, cm.Tensor) and eq.dtype == bool and eq.tolist() == [True, False, True, False]
    assert (pred == y).float().mean().item() == 0.5 and (pred == y).sum().item() == 2
    assert (pred != y).tolist() == [False, True, False, True] and pred.ne(y).tolist() == (pred != y).tolist()
    assert (pred < 3).tolist() == [True, True, False, False] and pred.lt(3).tolist() == (pred < 3).tolist()
    assert pred.ge(y).all().item() and not (pred > 4).any().item()
    assert (np.array([1.0, 0.0, 0.0, 0.0]) == pred).tolist() == [True, False, False, False]
    assert not (pred == None)  # noqa: E711  (as in PyTorch: False, not an error)
    assert (pred[pred > 2]).tolist() == [3.0, 4.0]   # a bool tensor indexes as a mask
    assert cm.where(pred > 2, pred, 0.0).tolist() == [0.0, 0.0, 3.0, 4.0]
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(pred == y)


def test_tensors_stay_hashable_and_found_by_identity():
    a, b = cm.tensor([1.0]), cm.tensor([1.0])
    assert len({a, b}) == 2 and {a: 1, b: 2}[b] == 2
    # (list.index and `in` compare with ==, elementwise as in PyTorch: the engine finds
    # tensors by identity instead, and so must code that looks for one)
    assert [i for i, p in enumerate([a, b]) if p is b] == [1]


# -- PyTorch itself ----------------------------------------------------------------------------

def test_comparisons_transpose_and_max_match_torch():
    torch = _torch()
    x = np.random.default_rng(1).integers(0, 3, (3, 4)).astype(np.float64)
    y = np.random.default_rng(2).integers(0, 3, (3, 4)).astype(np.float64)
    c, t = (cm.tensor(x), cm.tensor(y)), (torch.tensor(x), torch.tensor(y))
    for op in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "eq", "ne", "lt", "le", "gt", "ge"):
        np.testing.assert_array_equal(getattr(c[0], op)(c[1]).data, getattr(t[0], op)(t[1]).numpy())
    assert (c[0] == c[1]).float().mean().item() == pytest.approx((t[0] == t[1]).float().mean().item())
    assert (c[0] == c[1]).sum().item() == (t[0] == t[1]).sum().item()
    np.testing.assert_array_equal(c[0].transpose(0, 1).data, t[0].transpose(0, 1).numpy())
    z = np.random.default_rng(3).standard_normal((3, 4, 5))
    np.testing.assert_array_equal(cm.tensor(z).transpose(0, 2).data, torch.tensor(z).transpose(0, 2).numpy())
    for name in ("max", "min"):
        for dim in (0, 1, -1):
            for keepdim in (False, True):
                ours = getattr(cm.tensor(z), name)(dim, keepdim)
                theirs = getattr(torch.tensor(z), name)(dim, keepdim)
                np.testing.assert_array_equal(ours.values.data, theirs.values.numpy())
                np.testing.assert_array_equal(ours.indices.data, theirs.indices.numpy())
        assert getattr(cm.tensor(z), name)().item() == getattr(torch.tensor(z), name)().item()


def test_max_dim_gradient_matches_torch_with_ties():
    torch = _torch()
    x = np.array([[3.0, 3.0, 1.0], [0.0, 2.0, 2.0]])
    ours = cm.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    (ours.max(1).values * cm.tensor([1.0, 2.0])).sum().backward()
    (theirs.max(1).values * torch.tensor([1.0, 2.0], dtype=torch.float64)).sum().backward()
    np.testing.assert_array_equal(ours.grad.data, theirs.grad.numpy())


def test_inplace_rules_match_torch():
    torch = _torch()
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w -= 1.0
    ours = cm.tensor(np.ones(2), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        ours -= 1.0


def _tutorial_loop(lib, tensor, no_grad, model, x, y, lr, steps):
    """The official tutorials' update loop, written once for both libraries."""
    losses = []
    for _ in range(steps):
        out = model(x)
        loss = ((out - y) ** 2).mean()
        loss.backward()
        with no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        for p in model.parameters():
            p.grad.zero_()
        losses.append(loss.item())
    return losses


def test_tutorial_update_loop_trains_and_matches_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3))
    y = np.sin(x @ np.array([[1.0], [-2.0], [0.5]]))   # something a small net can learn
    cm.manual_seed(0)
    ours = cm.nn.Sequential(cm.nn.Linear(3, 8), cm.nn.Tanh(), cm.nn.Linear(8, 1))
    start = [p.data.copy() for p in ours.parameters()]
    losses = _tutorial_loop(cm, cm.tensor, cm.no_grad, ours, cm.tensor(x), cm.tensor(y), 0.1, 30)
    assert losses[-1] < 0.5 * losses[0]   # it trains: before, `p -= ...` left the weights unchanged
    assert all(not np.array_equal(p.data, s) for p, s in zip(ours.parameters(), start))

    torch = _torch()
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    with torch.no_grad():
        for q, s in zip(theirs.parameters(), start):
            q.copy_(torch.tensor(s))   # both Linears keep the weight as (out, in)
    ours_again = cm.nn.Sequential(cm.nn.Linear(3, 8), cm.nn.Tanh(), cm.nn.Linear(8, 1))
    with cm.no_grad():
        for p, s in zip(ours_again.parameters(), start):
            p.copy_(s)
    mine = _tutorial_loop(cm, cm.tensor, cm.no_grad, ours_again, cm.tensor(x), cm.tensor(y), 0.1, 30)
    reference = _tutorial_loop(torch, torch.tensor, torch.no_grad, theirs, torch.tensor(x), torch.tensor(y),
                               0.1, 30)
    np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-10)
    for p, q in zip(ours_again.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=0, atol=1e-10)
