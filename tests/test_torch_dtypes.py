"""Integer and bool tensors, casts and set_grad_enabled, as PyTorch: the dtypes of creation and
arithmetic, the refusal of requires_grad on integers, float casts that pass the gradient through
(checked by finite differences) and integer casts that cut the graph, indexing with int and bool
tensors, and cross_entropy with int64 labels."""
from __future__ import annotations

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml import ops
from fd import check_grad

# calcml's default float is float64 where torch's is float32: compare kinds through this map
_TORCH_NAMES = {"float32": "float64", "float64": "float64", "int64": "int64", "int32": "int32", "bool": "bool",
                "uint8": "uint8"}


def _torch_kind(t) -> str:
    return _TORCH_NAMES[str(t.dtype).replace("torch.", "")]


# -- creation ----------------------------------------------------------------------------------

def test_creation_dtypes():
    assert cm.tensor([1, 2]).dtype == cm.int64 == cm.long
    assert cm.tensor([1.0, 2]).dtype == cm.float64
    assert cm.tensor([True, False]).dtype == cm.bool
    assert cm.tensor([1, 2], dtype=cm.int32).dtype == cm.int32 == cm.int
    assert cm.tensor([1, 2], dtype=cm.uint8).dtype == np.uint8
    assert cm.tensor([1.7, 2.2], dtype=cm.long).tolist() == [1, 2]
    assert cm.from_numpy(np.arange(3)).dtype == cm.int64
    assert cm.from_numpy(np.arange(3, dtype=np.int32)).dtype == cm.int32
    assert cm.arange(5).dtype == cm.int64 and cm.arange(0.0, 5).dtype == cm.float64
    assert cm.arange(0, 1, 0.25).dtype == cm.float64
    assert cm.randint(0, 3, (4,)).dtype == cm.int64
    assert cm.Tensor([1, 2]).dtype == cm.float64   # torch.Tensor(data) makes floats


def test_creation_dtypes_match_torch():
    torch = pytest.importorskip("torch")
    cases = [([1, 2], {}), ([1.0, 2.0], {}), ([True, False], {}), ([1, 2], {"dtype": "int32"}),
             ([1, 2], {"dtype": "uint8"}), ([1, 2], {"dtype": "bool"})]
    for data, kw in cases:
        t = torch.tensor(data, **{k: getattr(torch, v) for k, v in kw.items()})
        c = cm.tensor(data, **{k: getattr(cm, v) for k, v in kw.items()})
        assert str(c.dtype) == _torch_kind(t), (data, kw)
        assert c.tolist() == t.tolist()
    assert str(cm.arange(5).dtype) == _torch_kind(torch.arange(5))
    assert str(cm.arange(0.0, 5).dtype) == _torch_kind(torch.arange(0.0, 5))
    assert str(cm.randint(0, 3, (4,)).dtype) == _torch_kind(torch.randint(0, 3, (4,)))
    assert str(cm.randperm(4).dtype) == _torch_kind(torch.randperm(4))
    assert str(cm.from_numpy(np.arange(3)).dtype) == _torch_kind(torch.from_numpy(np.arange(3)))


def test_randperm_is_a_permutation_from_calcml_generators():
    p = cm.randperm(10)
    assert p.dtype == cm.int64 and sorted(p.tolist()) == list(range(10))
    a = cm.randperm(20, generator=cm.Generator().manual_seed(3))
    b = cm.randperm(20, generator=cm.Generator().manual_seed(3))
    assert a.tolist() == b.tolist()
    cm.manual_seed(5)
    c = cm.randperm(20)
    cm.manual_seed(5)
    assert cm.randperm(20).tolist() == c.tolist()


def test_integer_tensors_never_require_grad():
    for make in (lambda: cm.tensor([1, 2], requires_grad=True), lambda: cm.arange(3, requires_grad=True),
                 lambda: cm.tensor([True], requires_grad=True), lambda: cm.tensor([1, 2]).requires_grad_()):
        with pytest.raises(RuntimeError, match="Only Tensors of floating point and complex dtype can require gradients"):
            make()


def test_integer_requires_grad_refusal_is_torchs():
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="Only Tensors of floating point and complex dtype can require gradients"):
        torch.tensor([1, 2], requires_grad=True)


# -- promotion -----------------------------------------------------------------------------------

_PAIRS = [("int64", "int64"), ("int64", "float64"), ("float64", "int64"), ("int32", "int64"),
          ("bool", "int64"), ("int64", "bool"), ("bool", "float64")]


_CASES = [(left, right, op) for op in "+-*/" for left, right in _PAIRS
          if not (op == "-" and "bool" in (left, right))]   # (refused: the test below)


@pytest.mark.parametrize("left,right,op", _CASES)
def test_arithmetic_promotes_as_torch(left, right, op):
    torch = pytest.importorskip("torch")
    a_data, b_data = [3, 1, 2], [2, 5, 4]
    tl, tr = (getattr(torch, d) if d != "float64" else torch.float64 for d in (left, right))
    ta, tb = torch.tensor(a_data, dtype=tl), torch.tensor(b_data, dtype=tr)
    ca, cb = cm.tensor(a_data, dtype=getattr(cm, left)), cm.tensor(b_data, dtype=getattr(cm, right))
    expected, got = eval(f"ta {op} tb"), eval(f"ca {op} cb")
    assert str(got.dtype) == _TORCH_NAMES[str(expected.dtype).replace("torch.", "")]
    np.testing.assert_allclose(got.data, expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**"])
@pytest.mark.parametrize("integer", ["int64", "int32", "int16", "uint8", "bool"])
def test_an_integer_tensor_meeting_a_float32_one_is_float32_as_in_torch(integer, op):
    torch = pytest.importorskip("torch")
    if op == "-" and integer == "bool":
        return   # refused, both ways (the test below)
    values, floats = [3, 1, 2], [2.5, 0.5, 4.0]
    ti, tf = torch.tensor(values, dtype=getattr(torch, integer)), torch.tensor(floats, dtype=torch.float32)
    ci, cf = cm.tensor(values, dtype=getattr(cm, integer)), cm.tensor(floats, dtype=cm.float32)
    for expected, got in ((eval(f"ti {op} tf"), eval(f"ci {op} cf")), (eval(f"tf {op} ti"), eval(f"cf {op} ci"))):
        assert expected.dtype == torch.float32 and got.dtype == cm.float32
        np.testing.assert_allclose(got.data, expected.numpy(), rtol=1e-6)
    w = cm.tensor(floats, dtype=cm.float32, requires_grad=True)   # the gradient stays float32 too
    (w * ci).sum().backward()
    assert w.grad.dtype == cm.float32 and w.grad.tolist() == ci.data.astype(np.float32).tolist()


@pytest.mark.parametrize("left,right", [p for p in _PAIRS if "bool" in p])
def test_subtracting_a_bool_tensor_is_refused_as_in_torch(left, right):
    a, b = cm.tensor([3, 1, 2], dtype=getattr(cm, left)), cm.tensor([2, 5, 4], dtype=getattr(cm, right))
    with pytest.raises(TypeError, match="with a bool tensor is not supported"):
        a - b
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="with a bool tensor is not supported"):
        torch.tensor([3, 1, 2], dtype=getattr(torch, left)) - torch.tensor([2, 5, 4], dtype=getattr(torch, right))


@pytest.mark.parametrize("scalar", [2, 0.5])
@pytest.mark.parametrize("dtype", ["int64", "bool", "float32"])
def test_tensor_with_python_number_promotes_as_torch(dtype, scalar):
    torch = pytest.importorskip("torch")
    t = torch.tensor([1, 0, 3], dtype=getattr(torch, dtype)) * scalar
    c = cm.tensor([1, 0, 3], dtype=getattr(cm, dtype)) * scalar
    assert str(c.dtype) == _torch_kind(t) if dtype != "float32" else c.dtype == cm.float32
    np.testing.assert_allclose(c.data, t.numpy())


def test_float32_stays_float32():
    a = cm.tensor([1.0, 2.0], dtype=cm.float32)
    assert all(r.dtype == cm.float32 for r in (a + a, a * a, a / a, a - a, a * 2, a / 3))


def test_int_division_is_true_division():
    q = cm.tensor([1, 3]) / cm.tensor([2, 2])
    assert q.dtype == cm.float64 and q.tolist() == [0.5, 1.5]


def test_float_gradient_through_a_mixed_op():
    x = cm.tensor([1.0, 2.0, 3.0], requires_grad=True)
    k = cm.tensor([2, 3, 4])
    (x * k).sum().backward()
    assert x.grad.dtype == cm.float64 and x.grad.tolist() == [2.0, 3.0, 4.0]


# -- casts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cast", ["float", "double", "to32", "type32"])
def test_float_casts_pass_the_gradient_through(cast):
    casts = {"float": lambda t: t.float(), "double": lambda t: t.double(), "to32": lambda t: t.to(cm.float32),
             "type32": lambda t: t.type(cm.float32)}
    fn = casts[cast]
    # the cast is the identity on values that float32 holds exactly; the gradient comes back float64
    x = np.array([[0.5, -1.25], [2.0, 3.5]])
    check_grad(lambda t: fn(t * t).double() * 3.0, lambda a: a * a * 3.0, [x], fwd_atol=1e-6)
    t = cm.tensor(x, requires_grad=True)
    y = fn(t)
    assert y.dtype == (cm.float64 if cast == "double" else cm.float32)
    y.sum().backward()
    assert t.grad.dtype == cm.float64 and np.all(t.grad.data == 1.0)


def test_float32_leaf_cast_to_double_gets_a_float32_gradient():
    w = cm.tensor([1.0, 2.0], dtype=cm.float32, requires_grad=True)
    (w.double() * cm.tensor([3.0, 4.0])).sum().backward()
    assert w.grad.dtype == cm.float32 and w.grad.tolist() == [3.0, 4.0]


def test_cast_has_a_second_derivative():
    x = cm.tensor([1.5, -2.0], requires_grad=True)
    y = (x.float() ** 3).double().sum()
    (g,) = cm.grad(y, [x], create_graph=True)
    (h,) = cm.grad(g.sum(), [x])
    np.testing.assert_allclose(h.data, 6 * x.data, rtol=1e-6)


def test_cast_is_in_the_derivative_table():
    assert ops.CAST in ops.PRIMITIVES and ops.BY_NAME["cast"] is ops.CAST
    x = cm.tensor([1.0], requires_grad=True)
    assert x.float().op == "cast" and x.double() is x


@pytest.mark.parametrize("method,dtype", [("long", "int64"), ("int", "int32"), ("bool", "bool")])
def test_integer_casts_cut_the_graph_and_match_torch(method, dtype):
    x = cm.tensor([1.7, -2.2, 0.0], requires_grad=True)
    y = getattr(x, method)()
    assert str(y.dtype) == dtype and not y.requires_grad and y.op is None
    assert x.type(getattr(cm, dtype)).tolist() == y.tolist() == x.to(getattr(cm, dtype)).tolist()
    torch = pytest.importorskip("torch")
    t = getattr(torch.tensor([1.7, -2.2, 0.0], dtype=torch.float64), method)()
    assert y.tolist() == t.tolist() and str(y.dtype) == _torch_kind(t)


def test_type_without_argument_names_the_type_as_torch():
    assert cm.tensor([1.0]).type() == "torch.DoubleTensor" and cm.tensor([1]).type() == "torch.LongTensor"
    assert cm.tensor([1]).type("torch.FloatTensor").dtype == cm.float32
    with pytest.raises(TypeError, match="float16"):
        cm.tensor([1.0]).type(np.float16)


# -- indexing and losses ---------------------------------------------------------------------------

def test_indexing_with_int_and_bool_tensors_matches_torch():
    data = np.arange(12.0).reshape(4, 3)
    x = cm.tensor(data, requires_grad=True)
    rows, mask = cm.tensor([2, 0, 2]), cm.tensor([True, False, True, False])
    picked = x[rows]
    masked = x[mask]
    pair = x[rows, cm.tensor([0, 1, 2])]
    (picked.sum() + masked.sum() + pair.sum()).backward()
    torch = pytest.importorskip("torch")
    t = torch.tensor(data, requires_grad=True)
    trows, tmask = torch.tensor([2, 0, 2]), torch.tensor([True, False, True, False])
    (t[trows].sum() + t[tmask].sum() + t[trows, torch.tensor([0, 1, 2])].sum()).backward()
    np.testing.assert_array_equal(picked.data, t[trows].detach().numpy())
    np.testing.assert_array_equal(masked.data, t[tmask].detach().numpy())
    np.testing.assert_array_equal(x.grad.data, t.grad.numpy())


def test_cross_entropy_takes_int64_labels_as_whole_number_floats():
    logits = np.random.default_rng(0).standard_normal((5, 3))
    labels = [0, 2, 1, 1, 0]
    a = cm.tensor(logits, requires_grad=True)
    b = cm.tensor(logits, requires_grad=True)
    la = F.cross_entropy(a, cm.tensor(labels))
    lb = F.cross_entropy(b, cm.tensor(labels, dtype=cm.float64))
    assert cm.tensor(labels).dtype == cm.int64
    la.backward(), lb.backward()
    assert la.item() == lb.item() and np.array_equal(a.grad.data, b.grad.data)
    torch = pytest.importorskip("torch")
    lt = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels))
    np.testing.assert_allclose(la.item(), lt.item(), rtol=1e-12)


# -- Tensor(*sizes) and set_grad_enabled -----------------------------------------------------------

def test_legacy_constructor_with_sizes():
    t = cm.Tensor(2, 3)
    assert t.shape == (2, 3) and t.dtype == cm.float64 and not t.data.any()
    assert cm.Tensor(4).shape == (4,) and cm.Tensor().shape == (0,)
    assert cm.Tensor(0.0).shape == () and cm.Tensor([2, 3]).tolist() == [2.0, 3.0]
    with pytest.raises(TypeError, match="cm.empty"):
        cm.Tensor([1.0], 3)
    torch = pytest.importorskip("torch")
    assert tuple(torch.Tensor(2, 3).shape) == cm.Tensor(2, 3).shape


def test_set_grad_enabled_as_function_and_context_manager():
    x = cm.tensor([1.0], requires_grad=True)
    assert cm.is_grad_enabled()
    with cm.set_grad_enabled(False):
        assert not cm.is_grad_enabled() and not (x * 2).requires_grad
        with cm.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not cm.is_grad_enabled()
    assert cm.is_grad_enabled()
    cm.set_grad_enabled(False)
    try:
        assert not cm.is_grad_enabled() and not (x * 2).requires_grad
    finally:
        cm.set_grad_enabled(True)
    assert (x * 2).requires_grad


def test_set_grad_enabled_is_torchs():
    torch = pytest.importorskip("torch")
    with torch.set_grad_enabled(False):
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
