"""Bounded history: ring buffers keep the last `capacity` values in order; series line up on 'step'."""
from __future__ import annotations

import math

import numpy as np
import pytest

from calcml.debug.history import History, RingBuffer


def test_ring_buffer_before_and_after_wrapping():
    r = RingBuffer(5)
    assert len(r) == 0 and r.total == 0 and math.isnan(r.last()) and r.last(default=-1) == -1
    assert r.values().shape == (0,)
    for v in range(3):
        r.append(v)
    np.testing.assert_array_equal(r.values(), [0, 1, 2])
    assert len(r) == 3 and r.last() == 2.0
    for v in range(3, 13):
        r.append(v)
    np.testing.assert_array_equal(r.values(), [8, 9, 10, 11, 12])     # oldest -> newest
    assert len(r) == 5 and r.capacity == 5 and r.total == 13 and r.last() == 12.0


@pytest.mark.parametrize("capacity", [1, 2, 3, 7])
def test_ring_buffer_matches_a_python_list_at_every_length(capacity):
    r = RingBuffer(capacity)
    seen = []
    for v in np.random.default_rng(capacity).normal(size=3 * capacity + 2):
        r.append(v)
        seen.append(v)
        np.testing.assert_array_equal(r.values(), seen[-capacity:])
        assert r.last() == seen[-1]


def test_ring_buffer_values_is_a_copy():
    r = RingBuffer(3)
    for v in (1.0, 2.0):
        r.append(v)
    out = r.values()
    out[:] = 99
    np.testing.assert_array_equal(r.values(), [1.0, 2.0])
    for v in (3.0, 4.0):
        r.append(v)
    out = r.values()
    out[:] = 99
    np.testing.assert_array_equal(r.values(), [2.0, 3.0, 4.0])


def test_ring_buffer_rejects_no_capacity():
    with pytest.raises(ValueError):
        RingBuffer(0)


def test_history_lines_up_late_and_missing_series_with_step():
    h = History(capacity=100)
    h.record(1, {"loss": 1.0})
    h.record(2, {"loss": 0.9})
    h.record(3, {"loss": 0.8, "val_loss": 1.5})       # starts late
    h.record(4, {"loss": 0.7})                        # missing at this step
    h.record(5, {"loss": 0.6, "val_loss": 1.2})
    assert h.names() == ["step", "loss", "val_loss"]
    np.testing.assert_array_equal(h.series("step"), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(h.series("loss"), [1.0, 0.9, 0.8, 0.7, 0.6])
    np.testing.assert_array_equal(h.series("val_loss"), [np.nan, np.nan, 1.5, np.nan, 1.2])
    assert len(h) == 5 and "val_loss" in h and "nope" not in h
    assert h.last("val_loss") == 1.2 and h.last("loss") == 0.6 and math.isnan(h.last("nope"))
    d = h.to_dict()
    assert d["step"] == [1, 2, 3, 4, 5] and all(type(s) is int for s in d["step"])
    assert d["val_loss"] == [None, None, 1.5, None, 1.2]


def test_history_series_started_after_the_buffer_wrapped():
    h = History(capacity=4)
    for step in range(1, 11):
        values = {"loss": float(step)}
        if step >= 9:
            values["late"] = 10.0 * step
        h.record(step, values)
    np.testing.assert_array_equal(h.series("step"), [7, 8, 9, 10])
    np.testing.assert_array_equal(h.series("loss"), [7, 8, 9, 10])
    np.testing.assert_array_equal(h.series("late"), [np.nan, np.nan, 90, 100])
    assert all(len(h.series(n)) == 4 for n in h.names())


def test_history_memory_stays_flat():
    h = History(capacity=50)
    names = [f"layer{k}.grad_norm" for k in range(20)]
    for step in range(1, 5001):
        h.record(step, {name: step + k for k, name in enumerate(names)})
        if step in (50, 5000):
            sizes = {n: h._series[n]._values.nbytes for n in h.names()}
    assert len(h) == 50 and all(len(h.series(n)) == 50 for n in h.names())
    assert set(sizes.values()) == {50 * 8}
    np.testing.assert_array_equal(h.series("step"), np.arange(4951, 5001))
    np.testing.assert_array_equal(h.series("layer3.grad_norm"), np.arange(4951, 5001) + 3)
    assert h._series["step"].total == 5000
