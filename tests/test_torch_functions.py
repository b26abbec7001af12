"""PyTorch's tensor functions and methods in calcml: each written once, run on calcml and on torch
(float64), and compared: values, shapes and the gradients of a scalar function of the output (to
1e-10); and every gradient against central finite differences of an independent numpy reference
(fd.check_grad)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import calcml as cm
from calcml import ops
from fd import check_grad, first_order, numeric_hvp

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(7)
IDX = np.array([[2, 0, 1, 2], [1, 1, 0, 3], [3, 2, 2, 0]])   # gather/scatter index into (3, 4) along dim 1
MASK = RNG.standard_normal((3, 4))   # > 0: the bool masks (calcml makes bool tensors by comparison)
COND = RNG.standard_normal((3, 4))


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _take(x, order, axis):
    return np.take_along_axis(x, order, axis=axis)


def _scatter_add(x, idx, src):
    out = x.copy()
    for i in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            out[i, idx[i, j]] += src[i, j]
    return out


# (id, input shapes, the function on calcml or torch (T is the module), a plain-numpy reference)
CASES = [
    ("cat0", [(2, 3), (1, 3), (3, 3)], lambda T, a, b, c: T.cat([a, b, c], 0), lambda a, b, c: np.concatenate([a, b, c], 0)),
    ("cat1", [(2, 1), (2, 3)], lambda T, a, b: T.cat((a, b * 2), dim=1), lambda a, b: np.concatenate([a, b * 2], 1)),
    ("cat-1", [(2, 2, 1), (2, 2, 2)], lambda T, a, b: T.cat([a, b], -1), lambda a, b: np.concatenate([a, b], -1)),
    ("stack0", [(2, 3), (2, 3)], lambda T, a, b: T.stack([a, b]), lambda a, b: np.stack([a, b])),
    ("stack1", [(2, 3), (2, 3), (2, 3)], lambda T, a, b, c: T.stack([a, b, c], 1), lambda a, b, c: np.stack([a, b, c], 1)),
    ("stack-1", [(2, 3), (2, 3)], lambda T, a, b: T.stack([a, b], dim=-1), lambda a, b: np.stack([a, b], -1)),
    ("exp", [(2, 3)], lambda T, x: T.exp(x), np.exp),
    ("log", [(2, 3)], lambda T, x: T.log(x * x + 0.5), lambda x: np.log(x * x + 0.5)),
    ("log10", [(2, 3)], lambda T, x: (x * x + 0.5).log10(), lambda x: np.log10(x * x + 0.5)),
    ("tanh", [(2, 3)], lambda T, x: T.tanh(x), np.tanh),
    ("sigmoid", [(2, 3)], lambda T, x: T.sigmoid(x), lambda x: 1 / (1 + np.exp(-x))),
    ("relu", [(2, 3)], lambda T, x: T.relu(x), lambda x: np.maximum(x, 0)),
    ("sin", [(2, 3)], lambda T, x: T.sin(x * 3), lambda x: np.sin(x * 3)),
    ("cos", [(2, 3)], lambda T, x: T.cos(x * 3), lambda x: np.cos(x * 3)),
    ("sum", [(2, 3)], lambda T, x: T.sum(x), np.sum),
    ("sum-dim", [(2, 3, 2)], lambda T, x: T.sum(x, 1), lambda x: x.sum(1)),
    ("sum-dims-keepdim", [(2, 3, 2)], lambda T, x: x.sum(dim=(0, 2), keepdim=True), lambda x: x.sum((0, 2), keepdims=True)),
    ("mean-dim", [(2, 3)], lambda T, x: T.mean(x, 1, keepdim=True), lambda x: x.mean(1, keepdims=True)),
    ("max", [(2, 3)], lambda T, x: T.max(x), np.max),
    ("max-dim", [(3, 4)], lambda T, x: T.max(x, 1)[0], lambda x: x.max(1)),
    ("min-dim-keepdim", [(3, 4)], lambda T, x: T.min(x, 0, keepdim=True).values, lambda x: x.min(0, keepdims=True)),
    ("matmul", [(2, 3), (3, 4)], lambda T, a, b: T.matmul(a, b), np.matmul),
    ("matmul-vec", [(2, 3), (3,)], lambda T, a, b: T.matmul(a, b), np.matmul),
    ("mm", [(2, 3), (3, 4)], lambda T, a, b: T.mm(a, b), np.matmul),
    ("mm-method", [(2, 3), (3, 4)], lambda T, a, b: a.mm(b), np.matmul),
    ("clamp", [(3, 4)], lambda T, x: T.clamp(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5)),
    ("clamp-min", [(3, 4)], lambda T, x: T.clamp(x, min=0.1), lambda x: np.maximum(x, 0.1)),
    ("flatten", [(2, 3, 2)], lambda T, x: T.flatten(x), lambda x: x.reshape(-1)),
    ("flatten-1", [(2, 3, 2, 2)], lambda T, x: x.flatten(1), lambda x: x.reshape(2, -1)),
    ("flatten-1-2", [(2, 3, 2, 2)], lambda T, x: T.flatten(x, 1, 2), lambda x: x.reshape(2, 6, 2)),
    ("where", [(3, 4), (3, 4)], lambda T, a, b: T.where(T.tensor(COND) > 0, a, b * 2), lambda a, b: np.where(COND > 0, a, b * 2)),
    ("softmax", [(3, 4)], lambda T, x: T.softmax(x, 1), lambda x: _softmax(x, 1)),
    ("softmax-dim0", [(3, 4)], lambda T, x: T.softmax(x, dim=0), lambda x: _softmax(x, 0)),
    ("softmax-method", [(3, 4)], lambda T, x: x.softmax(dim=-1), lambda x: _softmax(x, -1)),
    ("topk", [(3, 5)], lambda T, x: T.topk(x, 2, dim=1).values,
     lambda x: _take(x, np.argsort(-x, 1)[:, :2], 1)),
    ("topk-smallest-dim0", [(4, 3)], lambda T, x: x.topk(3, 0, largest=False)[0],
     lambda x: _take(x, np.argsort(x, 0)[:3], 0)),
    ("sort", [(3, 5)], lambda T, x: T.sort(x).values, lambda x: np.sort(x, -1)),
    ("sort-desc-dim0", [(4, 3)], lambda T, x: x.sort(0, descending=True)[0], lambda x: -np.sort(-x, 0)),
    # methods
    ("view", [(2, 3, 2)], lambda T, x: x.view(-1, 2), lambda x: x.reshape(-1, 2)),
    ("view-tuple", [(2, 3, 2)], lambda T, x: x.view((3, 4)), lambda x: x.reshape(3, 4)),
    ("reshape", [(2, 3, 2)], lambda T, x: x.reshape(6, 2), lambda x: x.reshape(6, 2)),
    ("unsqueeze", [(2, 3)], lambda T, x: x.unsqueeze(1), lambda x: x[:, None]),
    ("unsqueeze-end", [(2, 3)], lambda T, x: x.unsqueeze(-1), lambda x: x[..., None]),
    ("squeeze", [(2, 1, 3, 1)], lambda T, x: x.squeeze(), lambda x: x.reshape(2, 3)),
    ("squeeze-dim", [(2, 1, 3, 1)], lambda T, x: x.squeeze(1), lambda x: x.reshape(2, 3, 1)),
    ("squeeze-not-one", [(2, 1, 3)], lambda T, x: x.squeeze(0), lambda x: x),
    ("permute", [(2, 3, 4)], lambda T, x: x.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1)),
    ("t", [(2, 3)], lambda T, x: x.t(), lambda x: x.T),
    ("pow", [(2, 3)], lambda T, x: x.pow(3), lambda x: x ** 3),
    ("pow-tensor", [(2, 3), (2, 3)], lambda T, a, b: (a * a + 0.5).pow(b), lambda a, b: (a * a + 0.5) ** b),
    ("var", [(3, 4)], lambda T, x: x.var(), lambda x: x.var(ddof=1)),
    ("var-dim", [(3, 4)], lambda T, x: x.var(1), lambda x: x.var(1, ddof=1)),
    ("var-biased", [(3, 4)], lambda T, x: x.var(0, unbiased=False, keepdim=True), lambda x: x.var(0, keepdims=True)),
    ("var-correction", [(2, 3, 4)], lambda T, x: T.var(x, (0, 2), correction=2), lambda x: x.var((0, 2), ddof=2)),
    ("std", [(3, 4)], lambda T, x: x.std(), lambda x: x.std(ddof=1)),
    ("std-dim", [(3, 4)], lambda T, x: T.std(x, 0, keepdim=True), lambda x: x.std(0, ddof=1, keepdims=True)),
    ("round", [(3, 4)], lambda T, x: (x * 3).round() + x, lambda x: np.round(x * 3) + x),
    ("masked_fill", [(3, 4)], lambda T, x: x.masked_fill(T.tensor(MASK) > 0, -2.0), lambda x: np.where(MASK > 0, -2.0, x)),
    ("masked_fill-row", [(3, 4)], lambda T, x: x.masked_fill(T.tensor(MASK[0]) > 0, 0.5), lambda x: np.where(MASK[0] > 0, 0.5, x)),
    ("gather", [(3, 4)], lambda T, x: x.gather(1, T.tensor(IDX)), lambda x: np.take_along_axis(x, IDX, 1)),
    ("gather-fn-dim0", [(4, 4)], lambda T, x: T.gather(x, 0, T.tensor(IDX[:, :3])),
     lambda x: x[IDX[:, :3], np.arange(3)]),           # an index smaller than x, as torch allows
    ("scatter_add", [(3, 4), (3, 4)], lambda T, x, s: x.scatter_add(1, T.tensor(IDX), s), lambda x, s: _scatter_add(x, IDX, s)),
    ("expand", [(1, 3)], lambda T, x: x.expand(2, 4, -1), lambda x: np.broadcast_to(x, (2, 4, 3))),
    ("expand-tuple", [(3, 1)], lambda T, x: x.expand((3, 2)), lambda x: np.broadcast_to(x, (3, 2))),
    ("repeat", [(2, 3)], lambda T, x: x.repeat(2, 3), lambda x: np.tile(x, (2, 3))),
    ("repeat-new-dims", [(2, 3)], lambda T, x: x.repeat(2, 1, 2), lambda x: np.tile(x, (2, 1, 2))),
    ("chunk", [(2, 7)], lambda T, x: x.chunk(3, 1)[2] * 2 + x.chunk(3, 1)[0][:, :1],
     lambda x: x[:, 6:] * 2 + x[:, :1]),
    ("chunk-fn", [(5, 2)], lambda T, x: T.chunk(x, 2)[1], lambda x: x[3:]),
    ("split-size", [(5, 2)], lambda T, x: x.split(2)[2] + x.split(2)[1][:1], lambda x: x[4:] + x[2:3]),
    ("split-sections", [(2, 6)], lambda T, x: T.cat(T.split(x, [1, 2, 3], dim=1)[::-1], 1),
     lambda x: np.concatenate([x[:, 3:], x[:, 1:3], x[:, :1]], 1)),
]


def _inputs(shapes, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_values_shapes_and_gradients_match_torch(case):
    name, shapes, fn, _ = case
    arrays = _inputs(shapes, len(name))
    ours = [cm.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, ref = fn(cm, *ours), fn(torch, *theirs)
    assert isinstance(out, cm.Tensor) and out.dtype == cm.float64
    assert out.shape == tuple(ref.shape)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    R = np.random.default_rng(1).standard_normal(out.shape)
    ((out * R).sum() ** 2).backward()       # a scalar function of the output, not linear in it
    ((ref * torch.tensor(R)).sum() ** 2).backward()
    for k, (a, b) in enumerate(zip(ours, theirs)):
        expected = np.zeros(a.shape) if b.grad is None else b.grad.numpy()
        got = np.zeros(a.shape) if a.grad is None else a.grad.data
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10, err_msg=f"{name}: input {k}")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gradients_match_central_differences(case):
    name, shapes, fn, reference = case
    check_grad(lambda *t: fn(cm, *t), reference, _inputs(shapes, len(name) + 100))


@pytest.mark.parametrize("op", [ops.SIN, ops.COS], ids=lambda op: op.name)
def test_sin_and_cos_second_derivatives_by_double_backward(op):
    x = np.random.default_rng(3).standard_normal(5) * 2
    v = np.random.default_rng(4).standard_normal(5)
    f = lambda t: getattr(t, op.name)().sum() * 1.5   # noqa: E731
    assert op in ops.PRIMITIVES and ops.BY_NAME[op.name] is op
    t = cm.tensor(x, requires_grad=True)
    (g,) = cm.grad(f(t), [t], create_graph=True)
    (hv,) = cm.grad((g * cm.tensor(v)).sum(), [t])
    np.testing.assert_allclose(hv.data, numeric_hvp(f, [x], [v])[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(first_order(f, [x])[0], 1.5 * (np.cos(x) if op is ops.COS else np.cos(x)) *
                               (-np.tan(x) if op is ops.COS else 1.0), rtol=1e-12)


def test_scatter_add_takes_the_part_of_a_larger_src_its_index_covers():
    # torch's backward refuses this case (its gradient has the index's shape), so it is checked
    # against torch's values and against central differences only
    x, src = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 5))
    out = cm.tensor(x).scatter_add(1, cm.tensor(IDX), cm.tensor(src))
    np.testing.assert_allclose(out.data, torch.tensor(x).scatter_add(1, torch.tensor(IDX), torch.tensor(src)).numpy(),
                               rtol=1e-12)
    check_grad(lambda a, s: a.scatter_add(1, cm.tensor(IDX), s), lambda a, s: _scatter_add(a, IDX, s[:, :4]), [x, src])


# -- the results that are not differentiable: indices, facts, conversions -----------------------

def test_indices_are_int64_tensors_without_grad_and_match_torch():
    a = RNG.standard_normal((3, 5))
    x, tx = cm.tensor(a, requires_grad=True), torch.tensor(a)
    pairs = [
        (cm.argmax(x), torch.argmax(tx)), (cm.argmin(x, 1), torch.argmin(tx, 1)),
        (x.argmax(0, keepdim=True), tx.argmax(0, keepdim=True)), (cm.max(x, 1).indices, torch.max(tx, 1).indices),
        (cm.topk(x, 3).indices, torch.topk(tx, 3).indices), (x.sort(0, descending=True)[1], tx.sort(0, True)[1]),
    ]
    for ours, theirs in pairs:
        assert ours.dtype == np.int64 and not ours.requires_grad and ours.shape == tuple(theirs.shape)
        np.testing.assert_array_equal(ours.data, theirs.numpy())
    values, indices = cm.sort(x, 1)
    np.testing.assert_array_equal(np.take_along_axis(a, indices.data, 1), values.data)


def test_sort_is_stable_for_ties_both_ways():
    a = np.array([2.0, 1.0, 2.0, 1.0, 3.0])
    assert cm.sort(cm.tensor(a)).indices.tolist() == torch.sort(torch.tensor(a), stable=True).indices.tolist()
    assert cm.sort(cm.tensor(a), descending=True).indices.tolist() == \
        torch.sort(torch.tensor(a), descending=True, stable=True).indices.tolist()


def test_facts_and_conversions_read_as_torch():
    a = RNG.standard_normal((2, 3, 4))
    x, tx = cm.tensor(a), torch.tensor(a)
    assert x.dim() == tx.dim() == 3 and x.numel() == x.nelement() == tx.numel() == 24 == cm.numel(x)
    assert x.size() == tuple(tx.size()) and x.size(1) == tx.size(1) == 3 and x.size(-1) == 4
    assert x.size == 24 and int(x.size) == 24 and repr(x.size) == "24"   # numpy's element count still
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.size(3)
    assert x[0, 0, 0].item() == tx[0, 0, 0].item() and x.tolist() == tx.tolist()
    assert x.numpy() is x.data and x.cpu() is x and x.to("cpu") is x and x.to(cm.device("cpu")) is x
    assert x.to(cm.float64) is x and x.double() is x
    for f32 in (x.float(), x.to(cm.float32), x.to(dtype=cm.float32), x.to(cm.zeros(1, dtype=cm.float32))):
        assert f32.dtype == cm.float32 and np.array_equal(f32.data, a.astype(np.float32))
    for bad in (lambda: x.to("cuda"), lambda: x.to("cuda:0"), lambda: x.cuda()):
        with pytest.raises(RuntimeError, match="CPU"):
            bad()
    assert x.to(np.int64).dtype == np.int64 and x.to(np.int64).tolist() == tx.to(torch.int64).tolist()
    with pytest.raises(TypeError, match="cannot convert to float16"):
        x.to(np.float16)
    eq = x.eq(cm.tensor(np.where(a > 0, a, 0.0)))
    assert eq.dtype == bool and eq.tolist() == tx.eq(torch.tensor(np.where(a > 0, a, 0.0))).tolist()
    assert cm.allclose(x, x + 1e-9) and not cm.allclose(x, x + 1e-3) and cm.allclose(x, x + 1e-3, atol=1e-2)
    assert cm.equal(x, cm.tensor(a)) and not cm.equal(x, x[0]) and not cm.equal(x, x * 2)


def test_requires_grad_detach_and_clone():
    x = cm.tensor([1.0, 2.0]).requires_grad_()
    assert x.requires_grad and x.requires_grad_(False) is x and not x.requires_grad
    x.requires_grad_(True)
    y = x * 3
    d, c = y.detach(), y.clone()
    assert not d.requires_grad and np.shares_memory(d.data, y.data)
    assert c.requires_grad and not np.shares_memory(c.data, y.data)
    (c.sum() + d.sum()).backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_round_has_zero_gradient_and_rounds_half_to_even():
    x = cm.tensor([0.5, 1.5, 2.5, -0.5, 1.26, np.inf], requires_grad=True)
    out = x.round()
    assert out.tolist() == torch.tensor(x.data).round().tolist()
    out.sum().backward()
    assert x.grad.tolist() == [0.0] * 6           # no NaN from the infinity
    assert cm.tensor([1.26, -2.345]).round(decimals=1).tolist() == [1.3, -2.3]


def test_multinomial_draws_int64_indices_by_weight():
    cm.manual_seed(0)
    w = cm.tensor([0.0, 1.0, 3.0])
    draws = cm.multinomial(w, 4000, replacement=True)
    assert draws.dtype == np.int64 and draws.shape == (4000,) and not draws.requires_grad
    counts = np.bincount(draws.data, minlength=3)
    assert counts[0] == 0 and abs(counts[2] / 4000 - 0.75) < 0.03
    rows = cm.multinomial(cm.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 2.0, 1.0, 1.0]]), 3)
    assert rows.shape == (2, 3) and all(len(set(r)) == 3 for r in rows.tolist())   # no replacement: distinct
    assert 3 not in rows.tolist()[0] and 0 not in rows.tolist()[1]                   # zero weight: never drawn
    g = cm.Generator().manual_seed(5)
    assert cm.multinomial(w, 5, True, generator=g).tolist() == \
        cm.multinomial(w, 5, True, generator=cm.Generator().manual_seed(5)).tolist()
    with pytest.raises(RuntimeError, match="without replacement"):
        cm.multinomial(w, 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        cm.multinomial(cm.tensor([1.0, -1.0]), 1)


def test_mistakes_get_clear_messages():
    x = cm.randn(2, 3)
    with pytest.raises(RuntimeError, match="sizes of tensors must match except in dim 0"):
        cm.cat([x, cm.randn(2, 4)])
    with pytest.raises(RuntimeError, match="equal size"):
        cm.stack([x, cm.randn(3, 2)])
    with pytest.raises(TypeError, match="list or tuple"):
        cm.cat(x)
    with pytest.raises(IndexError, match="Dimension out of range"):
        cm.cat([x, x], 2)
    with pytest.raises(RuntimeError, match="index out of range"):
        x.gather(1, cm.tensor([[0, 3]]))
    with pytest.raises(RuntimeError, match="mm expects two matrices"):
        cm.mm(x, cm.randn(3))
    with pytest.raises(RuntimeError, match="add up to 3"):
        x.split([1, 1], 1)
    with pytest.raises(TypeError, match="bool mask"):
        x.masked_fill(cm.tensor([1.0, 0.0, 1.0]), 0.0)


def test_the_functions_are_the_namespaces_and_not_in_star_imports_over_builtins():
    for name in ("cat", "stack", "exp", "log", "tanh", "sigmoid", "relu", "sin", "cos", "sum", "mean", "max", "min",
                 "argmax", "argmin", "matmul", "mm", "clamp", "flatten", "where", "softmax", "multinomial",
                 "allclose", "equal", "topk", "sort"):
        assert callable(getattr(cm, name)) and callable(getattr(torch, name))
    assert not {"sum", "max", "min", "abs", "float"} & set(cm.__all__)
    assert math.isclose(cm.sum(cm.tensor([1.0, 2.0])).item(), 3.0)
