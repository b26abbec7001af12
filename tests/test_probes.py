"""The per-step measurements' building blocks against their plain numpy definitions."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from calcml.debug import probes

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=7), elements=any_float),
       threshold=st.floats(0.0, 10.0))
def test_count_small_is_the_number_of_entries_with_abs_below_the_threshold(a, threshold):
    # boundaries included: put some entries exactly at ±threshold
    flat = a.reshape(-1)
    flat[::3] = threshold
    flat[1::5] = -threshold
    mask = np.empty(a.size + 3, dtype=bool)
    with np.errstate(invalid="ignore"):
        expected = int(np.count_nonzero(np.abs(a) < threshold))
    assert probes.count_small(a, threshold, mask) == expected


@settings(max_examples=100, deadline=None)
@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=6), elements=finite),
       layout=st.sampled_from(["C", "F", "transposed", "strided"]))
def test_norm_of_any_memory_layout(a, layout):
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "transposed":
        a = a.T
    elif layout == "strided":
        a = a[::2]
    reference = math.sqrt(sum(float(x) ** 2 for x in a.reshape(-1)))
    assert math.isclose(probes.norm(a), reference, rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(probes.sq_norm(a), reference ** 2, rel_tol=1e-12, abs_tol=1e-300)


def test_norm_of_nothing_is_nan():
    assert math.isnan(probes.norm(None))


@settings(max_examples=150, deadline=None)
@given(out=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                      elements=st.sampled_from([0.0, -0.0, 1e-300, 0.5, 3.0])))
def test_relu_statistics_follow_their_definitions(out):
    """Mean local derivative: the fraction of outputs above 0 (ReLU's derivative there is 1,
    elsewhere 0). Dead fraction: the units (last axis) that are 0 for every example."""
    mean_d, dead, saturated = probes.activation_stats("relu", None, out, 0.01)
    if out.size == 0:
        assert math.isnan(mean_d)
        return
    units = out.reshape(-1, out.shape[-1]) if out.ndim > 1 else out.reshape(-1, 1)
    assert math.isclose(mean_d, float(np.mean(units > 0)))
    assert math.isclose(dead, float(np.mean(~(units > 0).any(axis=0))))
    assert saturated is None


def test_sigmoid_statistics_follow_their_definitions():
    rng = np.random.default_rng(0)
    out = 1 / (1 + np.exp(-rng.normal(scale=8.0, size=(16, 5))))
    out[:, 0] = 0.999999   # a unit saturated for the whole batch
    mean_d, dead, saturated = probes.activation_stats("sigmoid", None, out, 0.01)
    d = out * (1 - out)
    assert math.isclose(mean_d, float(d.mean()))
    assert dead is None
    assert math.isclose(saturated, float(np.mean((d < 0.01 * 0.25).all(axis=0))))
    assert saturated >= 1 / 5
