"""Bounded history: a ring keeps the last `capacity` values in order; series line up on 'step'.
(A history of capacity up to 1,000 thins nothing; tests/test_history_memory.py tests the
thinning, memory and precision of longer ones.)"""
from __future__ import annotations

import math

import numpy as np
import pytest

from calcml.debug.history import History


def one_series(capacity: int, values) -> History:
    h = History(capacity)
    for step, v in enumerate(values, 1):
        h.record(step, {"x": v})
    return h


def test_history_before_and_after_wrapping():
    h = History(5)
    assert len(h) == 0 and h.total == 0 and math.isnan(h.last("x")) and h.last("x", default=-1) == -1
    assert h.series("step").shape == (0,)
    h = one_series(5, range(3))
    np.testing.assert_array_equal(h.series("x"), [0, 1, 2])
    assert len(h) == 3 and h.last("x") == 2.0
    h = one_series(5, range(13))
    np.testing.assert_array_equal(h.series("x"), [8, 9, 10, 11, 12])     # oldest -> newest
    np.testing.assert_array_equal(h.series("step"), [9, 10, 11, 12, 13])
    assert len(h) == 5 and h.capacity == 5 and h.total == 13 and h.last("x") == 12.0


@pytest.mark.parametrize("capacity", [1, 2, 3, 7])
def test_history_matches_a_python_list_at_every_length(capacity):
    h = History(capacity)
    seen = []
    for step, v in enumerate(np.random.default_rng(capacity).normal(size=3 * capacity + 2), 1):
        h.record(step, {"x": v})
        seen.append(v)
        np.testing.assert_array_equal(h.series("x"), seen[-capacity:])
        assert h.last("x") == seen[-1]


def test_history_series_is_a_copy():
    h = one_series(3, (1.0, 2.0))
    out = h.series("x")
    out[:] = 99
    np.testing.assert_array_equal(h.series("x"), [1.0, 2.0])
    h = one_series(3, (1.0, 2.0, 3.0, 4.0))
    out = h.series("x")
    out[:] = 99
    np.testing.assert_array_equal(h.series("x"), [2.0, 3.0, 4.0])


def test_history_rejects_no_capacity():
    with pytest.raises(ValueError):
        History(0)


def test_history_with_more_series_than_its_first_width():
    h = History(capacity=6)
    for step in range(1, 10):
        h.record(step, {f"s{k}": step * 100 + k for k in range(min(step * 4, 30))})
    assert len(h.names()) == 31
    np.testing.assert_array_equal(h.series("s0"), [400, 500, 600, 700, 800, 900])
    np.testing.assert_array_equal(h.series("s29"), [np.nan, np.nan, np.nan, np.nan, 829, 929])
    np.testing.assert_array_equal(h.series("s17"), [np.nan, 517, 617, 717, 817, 917])


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
    """Once the ring has gone round (and a chunk of values has been freed for reuse), memory
    stops changing, however many more steps are recorded."""
    h = History(capacity=50)
    names = [f"layer{k}.grad_norm" for k in range(20)]
    sizes = {}
    for step in range(1, 5001):
        h.record(step, {name: step + k for k, name in enumerate(names)})
        if step in (50, 100, 1000, 2500, 5000):
            sizes[step] = h.nbytes
    assert len(h) == 50 and all(len(h.series(n)) == 50 for n in h.names())
    assert sizes[50] <= sizes[100] == sizes[1000] == sizes[2500] == sizes[5000] <= 50 * 8 * 2 * len(h.names())
    np.testing.assert_array_equal(h.series("step"), np.arange(4951, 5001))
    np.testing.assert_array_equal(h.series("layer3.grad_norm"), np.arange(4951, 5001) + 3)
    assert h.total == 5000


def test_history_with_changing_sets_of_names_orders_and_none():
    """Steps record different sets of series in different orders (each set's columns are looked
    up once and remembered, at most 64 sets at a time); every value lands in its own series."""
    rng = np.random.default_rng(0)
    h = History(capacity=500)
    expected: dict = {}
    names = [f"s{k}" for k in range(8)]
    for step in range(1, 301):
        chosen = [n for n in names if rng.random() < 0.5]
        rng.shuffle(chosen)
        values = {n: (None if rng.random() < 0.1 else float(step * 10 + int(n[1:]))) for n in chosen}
        h.record(step, values)
        for n in names:
            v = values.get(n)
            expected.setdefault(n, []).append(math.nan if v is None else v)
    for n in names:
        if n in h:
            np.testing.assert_array_equal(h.series(n), expected[n][-len(h):])
        else:
            assert all(math.isnan(v) for v in expected[n])
    np.testing.assert_array_equal(h.series("step"), np.arange(1, 301))
