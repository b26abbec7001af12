"""The per-step measurements' building blocks against their plain numpy definitions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import calcml as cm
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
    squares = sum(float(x) ** 2 for x in a.reshape(-1))
    # math.hypot scales as it goes: right where squares underflow (entries of 1e-179), as norm is
    reference = math.hypot(*(float(x) for x in a.reshape(-1)))
    assert math.isclose(probes.norm(a), reference, rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(probes.sq_norm(a), squares, rel_tol=1e-12, abs_tol=1e-300)


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


# -- histograms ----------------------------------------------------------------------------------

def _near_an_edge(values: np.ndarray, edges: np.ndarray) -> int:
    """How many values lie within a few ulps of an interior edge, where binning by formula and
    numpy's check against the rounded edges may disagree."""
    interior = edges[1:-1]
    if interior.size == 0 or values.size == 0:
        return 0
    tolerance = 4 * np.spacing(np.maximum(np.abs(interior), np.abs(edges).max()))
    return int(np.count_nonzero((np.abs(values[:, None] - interior[None, :]) <= tolerance).any(axis=1)))


@settings(max_examples=300, deadline=None)
@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=40),
                    elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)),
       bins=st.integers(1, 50))
def test_histogram_is_numpys_on_ordinary_data_but_for_values_on_an_edge(a, bins):
    """probes.histogram skips numpy's re-check of each value against the rounded edges (its ~3x):
    only a value lying on an edge (within rounding) may land in the next bin."""
    counts, edges = probes.histogram(a, bins)
    expected, expected_edges = np.histogram(a, bins=bins)
    assert np.array_equal(edges, expected_edges)
    assert counts.sum() == expected.sum() == a.size
    assert np.abs(counts - expected).sum() <= 2 * _near_an_edge(a.reshape(-1), edges)


def test_histogram_is_numpys_on_random_data():
    rng = np.random.default_rng(3)
    for scale in (1e-8, 1.0, 1e8):
        a = rng.normal(size=(64, 33)) * scale
        for bins in (1, 7, 30, 64):
            counts, edges = probes.histogram(a, bins)
            expected, expected_edges = np.histogram(a, bins=bins)
            assert np.array_equal(edges, expected_edges)
            assert np.array_equal(counts, expected), (scale, bins)


@settings(max_examples=300, deadline=None)
@given(a=hnp.arrays(st.sampled_from([np.float64, np.float32]), hnp.array_shapes(min_dims=1, max_dims=2, max_side=20),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
       bins=st.integers(1, 40))
def test_histogram_of_any_floats_counts_the_finite_ones_on_finite_ordered_edges(a, bins):
    counts, edges = probes.histogram(a, bins)
    assert counts.shape == (bins,) and edges.shape == (bins + 1,) and edges.dtype == np.float64
    assert np.all(np.isfinite(edges)) and np.all(edges[1:] >= edges[:-1])
    good = a[np.isfinite(a)].astype(np.float64)
    assert counts.sum() == good.size
    if good.size:
        assert edges[0] <= good.min() and good.max() <= edges[-1]


@settings(max_examples=300, deadline=None)
@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=12), elements=any_float))
def test_checked_norm_says_whether_every_entry_is_finite(a):
    n, finite = probes.checked_norm(a)
    assert finite == bool(np.isfinite(a).all())
    if finite:
        assert n == 0.0 or math.isclose(n, math.hypot(*a.reshape(-1).tolist()), rel_tol=1e-12)
    elif np.isnan(a).any():
        assert math.isnan(n)
    else:
        assert n == math.inf


@pytest.mark.parametrize("kind, module", [("relu", cm.nn.ReLU()), ("tanh", cm.nn.Tanh()), ("sigmoid", cm.nn.Sigmoid()),
                                          ("leaky_relu", cm.nn.LeakyReLU(0.1)), ("leaky_relu", cm.nn.LeakyReLU(-0.5)),
                                          ("softsign", cm.nn.Softsign())])
def test_layers_measured_together_give_each_layers_own_numbers(kind, module):
    """A deep net's same-shaped activation layers are measured in one stacked pass: each layer's
    numbers are exactly those it gets alone, NaN and overflowing ones included."""
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((16, 8)) * scale for scale in (1.0, 30.0, 1e-3, 1.0, 1.0)]
    xs[3][2, 5] = np.nan                      # a NaN in one layer leaves the others alone
    xs[4][:, 0] = -5.0                        # a unit below 0 for the whole batch
    outs = [np.asarray(module(cm.Tensor(x)).data) for x in xs]
    probe = probes.ActivationProbe(kind, module)
    with np.errstate(all="ignore"):
        together = probe.stats_many(outs, xs, 0.01)
        alone = [probe.stats(out, x, 0.01) for out, x in zip(outs, xs)]
    assert len(together) == len(alone) == 5
    for a, b in zip(together, alone):
        assert all((p is None and q is None) or p == q or (math.isnan(p) and math.isnan(q))
                   for p, q in zip(a, b)), (a, b)


def test_an_activation_whose_derivative_reads_its_input_is_measured_from_the_input():
    """leaky_relu with a negative slope: the output's sign is not the input's, so its local
    derivative (1 where z > 0, else α) must come from the input, alone and stacked."""
    module = cm.nn.LeakyReLU(-0.5)
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((16, 8)) for _ in range(4)]
    outs = [np.asarray(module(cm.Tensor(x)).data) for x in xs]
    probe = probes.ActivationProbe("leaky_relu", module)
    with np.errstate(all="ignore"):
        alone = [probe.stats(out, x, 0.01)[0] for out, x in zip(outs, xs)]
        together = [s[0] for s in probe.stats_many(outs, xs, 0.01)]
    expected = [float(np.mean(np.where(x > 0, 1.0, -0.5))) for x in xs]
    assert alone == pytest.approx(expected, rel=1e-12) and together == pytest.approx(expected, rel=1e-12)
