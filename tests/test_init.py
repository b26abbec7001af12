"""cm.nn.init: the PyTorch formulas, checked statistically on a large tensor, and Linear's default init."""
import math

import numpy as np
import pytest

import calcml as cm
from calcml.nn import init

FAN_OUT, FAN_IN = 1000, 500  # 500k samples: the sample std is within ~0.1% of the true one


def big(shape=(FAN_OUT, FAN_IN)):
    return cm.nn.Parameter(np.full(shape, np.nan))


def rng():
    return np.random.default_rng(0)


def assert_std(w, expected, rtol=0.02):
    assert abs(w.data.mean()) < 0.01 * expected + 1e-12
    assert w.data.std() == pytest.approx(expected, rel=rtol)


# -- calculate_gain -----------------------------------------------------------------------
@pytest.mark.parametrize("name, param, gain", [
    ("linear", None, 1.0),
    ("identity", None, 1.0),
    ("sigmoid", None, 1.0),
    ("tanh", None, 5.0 / 3),
    ("relu", None, math.sqrt(2.0)),
    ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01 ** 2))),
    ("leaky_relu", 0.2, math.sqrt(2.0 / 1.04)),
    ("leaky_relu", math.sqrt(5), math.sqrt(1.0 / 3)),
])
def test_calculate_gain(name, param, gain):
    assert init.calculate_gain(name, param) == pytest.approx(gain)


def test_calculate_gain_unknown():
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.calculate_gain("swishy")


# -- kaiming / xavier -----------------------------------------------------------------------
def test_kaiming_normal_relu():
    w = init.kaiming_normal_(big(), nonlinearity="relu", generator=rng())
    assert_std(w, math.sqrt(2.0 / FAN_IN))


def test_kaiming_normal_default_is_relu_gain():
    # default nonlinearity leaky_relu with a=0 is plain ReLU
    w = init.kaiming_normal_(big(), generator=rng())
    assert_std(w, math.sqrt(2.0 / FAN_IN))


def test_kaiming_normal_fan_out():
    w = init.kaiming_normal_(big(), mode="fan_out", nonlinearity="relu", generator=rng())
    assert_std(w, math.sqrt(2.0 / FAN_OUT))


def test_kaiming_uniform_bounds_and_std():
    w = init.kaiming_uniform_(big(), nonlinearity="relu", generator=rng())
    bound = math.sqrt(6.0 / FAN_IN)
    assert np.abs(w.data).max() <= bound
    assert w.data.max() > 0.99 * bound and w.data.min() < -0.99 * bound
    assert_std(w, math.sqrt(2.0 / FAN_IN))


def test_kaiming_conv_shape_fans():
    # fan_in of a (out, in, kh, kw) kernel is in * kh * kw
    w = init.kaiming_normal_(big((64, 32, 5, 5)), nonlinearity="relu", generator=rng())
    assert_std(w, math.sqrt(2.0 / (32 * 25)), rtol=0.03)


def test_kaiming_bad_mode_and_1d_tensor():
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(big((4, 3)), mode="fan_avg")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.kaiming_uniform_(big((5,)))


def test_xavier_normal():
    w = init.xavier_normal_(big(), generator=rng())
    assert_std(w, math.sqrt(2.0 / (FAN_IN + FAN_OUT)))
    w = init.xavier_normal_(big(), gain=init.calculate_gain("tanh"), generator=rng())
    assert_std(w, 5.0 / 3 * math.sqrt(2.0 / (FAN_IN + FAN_OUT)))


def test_xavier_uniform():
    w = init.xavier_uniform_(big(), generator=rng())
    bound = math.sqrt(6.0 / (FAN_IN + FAN_OUT))
    assert np.abs(w.data).max() <= bound and w.data.max() > 0.99 * bound
    assert_std(w, math.sqrt(2.0 / (FAN_IN + FAN_OUT)))


# -- simple fills -------------------------------------------------------------------------
def test_normal_():
    w = init.normal_(big(), mean=3.0, std=0.5, generator=rng())
    assert w.data.mean() == pytest.approx(3.0, abs=0.005)
    assert w.data.std() == pytest.approx(0.5, rel=0.02)


def test_uniform_():
    w = init.uniform_(big(), a=-2.0, b=4.0, generator=rng())
    assert w.data.min() >= -2.0 and w.data.max() < 4.0
    assert w.data.mean() == pytest.approx(1.0, abs=0.02)
    assert w.data.std() == pytest.approx(6.0 / math.sqrt(12), rel=0.02)


def test_constant_zeros_ones():
    w = big((3, 4))
    assert init.constant_(w, 2.5) is w and np.all(w.data == 2.5)
    assert init.zeros_(w) is w and np.all(w.data == 0.0)
    assert init.ones_(w) is w and np.all(w.data == 1.0)


def test_init_works_in_place():
    w = big((30, 20))
    buffer = w.data
    out = init.kaiming_uniform_(w, generator=rng())
    assert out is w and w.data is buffer and np.all(np.isfinite(buffer))
    assert w.requires_grad


def test_generator_and_manual_seed_repeat():
    a = init.normal_(big((50, 40)), generator=np.random.default_rng(7))
    b = init.normal_(big((50, 40)), generator=np.random.default_rng(7))
    np.testing.assert_array_equal(a.data, b.data)
    cm.manual_seed(7)
    c = init.xavier_uniform_(big((50, 40)))
    cm.manual_seed(7)
    d = init.xavier_uniform_(big((50, 40)))
    np.testing.assert_array_equal(c.data, d.data)


# -- Linear's default init ------------------------------------------------------------------
def test_linear_default_init_is_pytorch():
    cm.manual_seed(0)
    layer = cm.nn.Linear(FAN_IN, FAN_OUT)
    bound = 1.0 / math.sqrt(FAN_IN)
    w, b = layer.weight.data, layer.bias.data
    assert w.shape == (FAN_OUT, FAN_IN) and b.shape == (FAN_OUT,)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # uniform: the values fill the range, and std = bound / sqrt(3)
    assert w.max() > 0.99 * bound and w.min() < -0.99 * bound
    assert b.max() > 0.9 * bound and b.min() < -0.9 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_manual_seed_makes_linear_repeatable():
    cm.manual_seed(123)
    a = cm.nn.Linear(8, 4)
    cm.manual_seed(123)
    b = cm.nn.Linear(8, 4)
    c = cm.nn.Linear(8, 4)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(b.weight.data, c.weight.data)


def test_linear_without_bias():
    layer = cm.nn.Linear(3, 2, bias=False)
    assert layer.bias is None
    assert np.abs(layer.weight.data).max() <= 1.0 / math.sqrt(3)


def test_zero_element_tensors_are_a_no_op():
    assert init.kaiming_normal_(big((3, 0))).shape == (3, 0)
    layer = cm.nn.Linear(0, 3)
    assert layer.weight.shape == (3, 0) and np.all(layer.bias.data == 0.0)
