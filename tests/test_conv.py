"""Conv1d, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and BatchNorm2d against PyTorch in
float64 (weights copied; outputs and every gradient to 1e-10), against central finite
differences, through a second derivative, and their refusals."""
from __future__ import annotations

import math

import numpy as np
import pytest

import calcml as cm
import calcml.nn.functional as F
from calcml import ops
from fd import check_grad, numeric_hvp

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _pair(c_out, t_out, c_inputs, t_inputs, tol=1e-10):
    np.testing.assert_allclose(c_out.data, t_out.detach().numpy(), rtol=tol, atol=tol)
    R = np.random.default_rng(7).standard_normal(c_out.shape)
    (c_out * R).sum().backward()
    (t_out * torch.tensor(R)).sum().backward()
    for c, t in zip(c_inputs, t_inputs):
        assert c.grad is not None and t.grad is not None
        np.testing.assert_allclose(c.grad, t.grad.numpy(), rtol=tol, atol=tol)


def _leaf(a):
    return cm.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


CONV_CASES = [  # (C, O, H, W, kernel, stride, padding, dilation)
    (1, 4, 7, 9, 3, 1, 0, 1), (3, 5, 8, 8, 3, 2, 1, 1), (2, 3, 9, 7, (2, 3), (2, 1), (1, 0), 1),
    (2, 2, 11, 10, 3, 1, 2, 2), (1, 6, 5, 5, 5, 1, 0, 1), (2, 4, 6, 7, 1, 3, 0, 1), (2, 3, 7, 7, 3, 1, "same", 1),
    (2, 3, 7, 6, (3, 1), 1, "valid", 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_torch(case, bias):
    c, o, h, w, k, s, p, d = case
    rng = np.random.default_rng(0)
    t_layer = torch.nn.Conv2d(c, o, k, stride=s, padding=p, dilation=d, bias=bias).double()
    layer = cm.nn.Conv2d(c, o, k, stride=s, padding=p, dilation=d, bias=bias)
    layer.weight.data[...] = t_layer.weight.detach().numpy()
    if bias:
        layer.bias.data[...] = t_layer.bias.detach().numpy()
    x, tx = _leaf(rng.standard_normal((3, c, h, w)))
    c_params = [x, layer.weight] + ([layer.bias] if bias else [])
    t_params = [tx, t_layer.weight] + ([t_layer.bias] if bias else [])
    _pair(layer(x), t_layer(tx), c_params, t_params)


@pytest.mark.parametrize("k, s, p, d", [(3, 1, 0, 1), (4, 2, 1, 1), (3, 3, 2, 2), (5, 1, "same", 1)])
def test_conv1d_and_the_functional_forms_match_torch(k, s, p, d):
    rng = np.random.default_rng(1)
    x, tx = _leaf(rng.standard_normal((2, 3, 13)))
    w, tw = _leaf(rng.standard_normal((4, 3, k)))
    b, tb = _leaf(rng.standard_normal(4))
    _pair(F.conv1d(x, w, b, s, p, d), TF.conv1d(tx, tw, tb, s, p, d), [x, w, b], [tx, tw, tb])
    layer, t_layer = cm.nn.Conv1d(3, 4, k, s, p, d), torch.nn.Conv1d(3, 4, k, s, p, d).double()
    layer.weight.data[...], layer.bias.data[...] = t_layer.weight.detach().numpy(), t_layer.bias.detach().numpy()
    x2, tx2 = _leaf(rng.standard_normal((2, 3, 13)))
    _pair(layer(x2), t_layer(tx2), [x2, layer.weight, layer.bias], [tx2, t_layer.weight, t_layer.bias])
    x3, tx3 = _leaf(rng.standard_normal((2, 3, 9, 8)))
    w3, tw3 = _leaf(rng.standard_normal((2, 3, 3, 2)))
    _pair(F.conv2d(x3, w3, None, 2, 1), TF.conv2d(tx3, tw3, None, 2, 1), [x3, w3], [tx3, tw3])


POOL_CASES = [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), (3, 1, 0), (2, 3, 0)]


@pytest.mark.parametrize("k, s, p", POOL_CASES)
def test_pooling_matches_torch(k, s, p):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((3, 2, 7, 9))
    for c_fn, t_fn in [(F.max_pool2d, TF.max_pool2d), (F.avg_pool2d, TF.avg_pool2d)]:
        x, tx = _leaf(a)
        _pair(c_fn(x, k, s, p), t_fn(tx, k, s, p), [x], [tx])
    for c_mod, t_mod in [(cm.nn.MaxPool2d, torch.nn.MaxPool2d), (cm.nn.AvgPool2d, torch.nn.AvgPool2d)]:
        x, tx = _leaf(a)
        _pair(c_mod(k, s, p)(x), t_mod(k, s, p)(tx), [x], [tx])


def test_max_pool_ties_go_to_the_first_maximum_as_in_torch():
    a = np.zeros((1, 1, 4, 4))
    a[0, 0, :2, :2] = 1.0
    x, tx = _leaf(a)
    _pair(F.max_pool2d(x, 2), TF.max_pool2d(tx, 2), [x], [tx])


@pytest.mark.parametrize("size", [1, 2, (3, 2), (4, 5), (None, 3), 7])
def test_adaptive_avg_pool_matches_torch_for_any_output_size(size):
    rng = np.random.default_rng(3)
    x, tx = _leaf(rng.standard_normal((2, 3, 7, 9)))
    _pair(cm.nn.AdaptiveAvgPool2d(size)(x), torch.nn.AdaptiveAvgPool2d(size)(tx), [x], [tx])


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm2d_matches_torch_in_training_and_eval(affine):
    rng = np.random.default_rng(4)
    bn, t_bn = cm.nn.BatchNorm2d(3, affine=affine), torch.nn.BatchNorm2d(3, affine=affine).double()
    if affine:
        w, b = rng.standard_normal(3), rng.standard_normal(3)
        bn.weight.data[...], bn.bias.data[...] = w, b
        with torch.no_grad():
            t_bn.weight[...], t_bn.bias[...] = torch.tensor(w), torch.tensor(b)
    x, tx = _leaf(rng.standard_normal((4, 3, 5, 6)) * 2 + 1)
    c_params = [x] + ([bn.weight, bn.bias] if affine else [])
    t_params = [tx] + ([t_bn.weight, t_bn.bias] if affine else [])
    _pair(bn(x), t_bn(tx), c_params, t_params)
    np.testing.assert_allclose(bn.running_mean.data, t_bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data, t_bn.running_var.numpy(), rtol=1e-12)
    bn.eval(), t_bn.eval()
    x2, tx2 = _leaf(rng.standard_normal((2, 3, 5, 6)))
    _pair(bn(x2), t_bn(tx2), [x2], [tx2])


def test_initialisation_is_pytorchs_bound():
    layer = cm.nn.Conv2d(3, 64, (3, 5))
    bound = 1 / math.sqrt(3 * 15)
    for p in (layer.weight.data, layer.bias.data):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound
    assert cm.nn.Conv1d(2, 3, 4).weight.shape == (3, 2, 4)


# -- finite differences, independently of torch ---------------------------------------------------

def _np_conv(x, w, stride, padding, dilation):
    """A direct loop over output positions: the reference for the op."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    o, c, kh, kw = w.shape
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    return out


@pytest.mark.parametrize("stride, padding, dilation", [((1, 1), (0, 0), (1, 1)), ((2, 1), (1, 2), (1, 2))])
def test_conv_ops_have_the_gradient_of_central_differences(stride, padding, dilation):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 2, 6, 7)), rng.standard_normal((3, 2, 3, 2))
    attrs = (stride, padding, dilation)
    check_grad(lambda a, b: F.conv2d(a, b, None, stride, padding, dilation),
               lambda a, b: _np_conv(a, b, *attrs), [x, w])
    g = rng.standard_normal(ops._conv2d(x, w, *attrs).shape)
    check_grad(lambda a, b: _apply_op(ops.CONV2D_INPUT, a, b, (*attrs, x.shape)),
               lambda a, b: ops._conv2d_input(a, b, *attrs, x.shape), [g, w])
    check_grad(lambda a, b: _apply_op(ops.CONV2D_WEIGHT, a, b, (*attrs, w.shape)),
               lambda a, b: ops._conv2d_weight(a, b, *attrs, w.shape), [x, g])


def _apply_op(op, *args):
    from calcml.tensor import _apply
    *tensors, attrs = args
    return _apply(op, *tensors, attrs=attrs)


def test_pooling_ops_have_the_gradient_of_central_differences():
    rng = np.random.default_rng(6)
    x = rng.permutation(np.arange(2 * 2 * 7 * 6, dtype=float)).reshape(2, 2, 7, 6) / 10   # no ties
    check_grad(lambda a: F.max_pool2d(a, 3, 2, 1), lambda a: ops._maxpool2d(a, (3, 3), (2, 2), (1, 1)), [x])
    check_grad(lambda a: F.avg_pool2d(a, (2, 3), 1, (1, 0)),
               lambda a: ops._avgpool2d(a, (2, 3), (1, 1), (1, 0)), [x])
    g = rng.standard_normal((2, 2, 8, 4))   # the pool's output shape
    check_grad(lambda a: _apply_op(ops.AVGPOOL2D_INPUT, a, ((2, 3), (1, 1), (1, 0), x.shape)),
               lambda a: ops._avgpool2d_input(a, (2, 3), (1, 1), (1, 0), x.shape), [g])


def test_second_derivatives_through_conv_and_pooling():
    """H·v from double backward equals central differences of ordinary gradients."""
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))

    def f(a, b):
        y = F.conv2d(a, b, None, 1, 1)
        y = F.max_pool2d(y * y, 2) + F.avg_pool2d(y.tanh(), 3, 1, 1)[:, :, ::2, ::2]
        return (y * y).sum()

    vs = [rng.standard_normal(x.shape), rng.standard_normal(w.shape)]
    tx, tw = cm.tensor(x, requires_grad=True), cm.tensor(w, requires_grad=True)
    gx, gw = cm.grad(f(tx, tw), [tx, tw], create_graph=True)
    hv = cm.grad((gx * vs[0]).sum() + (gw * vs[1]).sum(), [tx, tw])
    numeric = numeric_hvp(f, [x, w], vs)
    for a, n in zip(hv, numeric):
        np.testing.assert_allclose(a.data, n, rtol=1e-5, atol=1e-5)


# -- refusals --------------------------------------------------------------------------------------

def test_refusals_say_what_is_supported():
    x = cm.zeros(1, 2, 5, 5)
    with pytest.raises(ValueError, match="groups=2 is not supported, only groups=1"):
        cm.nn.Conv2d(2, 2, 3, groups=2)
    with pytest.raises(ValueError, match="groups=2 is not supported"):
        F.conv2d(x, cm.zeros(2, 1, 3, 3), groups=2)
    with pytest.raises(ValueError, match="padding_mode='reflect' is not supported"):
        cm.nn.Conv2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        F.conv2d(x, cm.zeros(2, 2, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="uneven padding"):
        F.conv2d(x, cm.zeros(2, 2, 2, 2), padding="same")
    with pytest.raises(ValueError, match=r"expects a batch \(N, C, H, W\) with C = 3 channels, got \(1, 2, 5, 5\)"):
        cm.nn.Conv2d(3, 2, 3)(x)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        F.conv2d(x, cm.zeros(2, 2, 7, 7))
    with pytest.raises(ValueError, match="ceil_mode=True is not supported"):
        cm.nn.MaxPool2d(2, ceil_mode=True)(x)
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="count_include_pad=True"):
        F.avg_pool2d(x, 2, count_include_pad=False)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(2\): expects inputs of shape \(N, 2, H, W\)"):
        cm.nn.BatchNorm2d(2)(cm.zeros(4, 2))
    with pytest.raises(ValueError, match=r"an unbatched input"):
        F.max_pool2d(cm.zeros(2, 5, 5), 2)


def test_float32_stays_float32():
    layer = cm.nn.Conv2d(1, 2, 3, dtype=np.float32)
    x = cm.tensor(np.ones((2, 1, 5, 5)), dtype=np.float32, requires_grad=True)
    y = F.max_pool2d(layer(x), 2)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32 and layer.weight.grad.dtype == np.float32
