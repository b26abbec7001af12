"""A long history: the newest steps whole, older ones thinned (every measurement of a sparse series
kept), float64 values exact, and the memory of a 64-layer net's 1,150 series under 20 MB."""
from __future__ import annotations

import json
import sys
import math
import threading
import time
import tracemalloc

import numpy as np
import pytest

from calcml.debug.history import History


def record_all(h: History, rows) -> dict:
    """Record (step, values) rows; return {step: values} as written."""
    written = {}
    for step, values in rows:
        h.record(step, values)
        written[step] = dict(values)
    return written


def written_value(written: dict, step: int, name: str) -> float:
    value = written[step].get(name)
    return math.nan if value is None else float(value)


def assert_lines_up(h: History, written: dict) -> None:
    """Every kept step was recorded, in order; every series has, at each kept step, exactly the
    value written there (NaN where none was)."""
    steps = h.series("step")
    assert len(steps) == len(h) and np.all(np.diff(steps) > 0)
    assert set(steps.astype(int).tolist()) <= set(written)
    for name in h.names()[1:]:
        values = h.series(name)
        assert len(values) == len(steps)
        np.testing.assert_array_equal(values, [written_value(written, int(s), name) for s in steps], err_msg=name)


def test_the_newest_steps_are_kept_whole_and_older_ones_every_k_th():
    h = History(1_000, full_bytes=100 * 2 * 8, min_full=1, thin_every=5)   # room for 100 steps of 2 values
    written = record_all(h, ((s, {"loss": 1.0 / s, "lr": 0.1 * s}) for s in range(1, 3001)))
    steps = h.series("step").astype(int).tolist()
    assert steps[-100:] == list(range(2901, 3001))            # the newest 100: every step
    assert steps[:-100] == list(range(2001, 2901, 5))          # the rest of the newest 1,000: every 5th
    assert len(h) == 280 and h.total == 3000 and h.capacity == 1000
    np.testing.assert_array_equal(h.series("loss"), 1.0 / np.array(steps, dtype=float))
    assert_lines_up(h, written)
    assert h.last("loss") == 1.0 / 3000 and h.last("step") == 3000


@pytest.mark.parametrize("width, full", [(1, 10_000), (20, 10_000), (52, 10_000), (100, 5_242), (128, 4_096),
                                         (600, 1_000)])
def test_the_newest_steps_kept_in_full_are_those_that_fit_in_4_mib(width, full):
    """A small model keeps its whole capacity in full, as a plain ring: every one of the newest
    10,000 steps. A wider one keeps as many as 4 MiB of values hold (never fewer than 1,000) and
    thins the steps before them."""
    h = History()
    assert (h.capacity, h.full_bytes, h.min_full, h.thin_every) == (10_000, 4 << 20, 1_000, 10)
    values = {f"s{k}": float(k) for k in range(width)}
    for step in range(1, 25_001):
        h.record(step, values)
    steps = h.series("step").astype(int)
    assert steps[-full:].tolist() == list(range(25_001 - full, 25_001))
    if full < 10_000:
        older = steps[:-full]
        assert steps[-full - 1] < 25_000 - full and np.diff(older).tolist() == [10] * (len(older) - 1)
        assert 15_000 < older[0] <= 15_010
    assert len(h) == len(steps) == full + -(-(10_000 - full) // 10) * (full < 10_000)
    np.testing.assert_array_equal(h.series(f"s{width - 1}"), np.full(len(h), width - 1.0))


def test_history_arguments():
    assert History(500).min_full == 500 and History(1).min_full == 1
    for bad in ({"thin_every": 0}, {"min_full": 0}, {"full_bytes": -1}):
        with pytest.raises(ValueError):
            History(100, **bad)


def test_series_measured_every_few_steps_keep_every_measurement():
    """Update ratios every 10 steps, a validation loss every 7, curvature every 100, a series that
    starts late: each keeps all of its measurements in the newest `capacity` steps, at the steps
    they were taken; the every-step series have a value at least every `thin_every` steps."""
    schedule = {
        "ratio": lambda s: s % 10 == 0,
        "val_loss": lambda s: s % 7 == 3,
        "hessian_diag": lambda s: s % 100 == 42,
        "late": lambda s: s >= 5_000 and s % 3 == 0,
    }

    def rows():
        for s in range(1, 6_001):
            values = {"loss": s * 1.0, "g": -float(s)}
            for name, when in schedule.items():
                if when(s):
                    values[name] = s / 7.0
            yield s, values

    h = History(4_000, full_bytes=0, min_full=400, thin_every=10)
    written = record_all(h, rows())
    steps = h.series("step").astype(int)
    for name, when in schedule.items():
        measured = steps[np.isfinite(h.series(name))].tolist()
        assert measured == [s for s in range(2_001, 6_001) if when(s)], name    # all of them, none made up
    assert steps[-400:].tolist() == list(range(5_601, 6_001))
    older = steps[:-400]
    assert older[0] - 2_001 < 10 and np.diff(older).max() <= 10
    assert np.isfinite(h.series("loss")).all() and np.isfinite(h.series("g")).all()
    assert len(h) < 2_000                                       # thinned: less than half the steps
    assert_lines_up(h, written)


def test_thinning_with_changing_sets_of_names_and_none_against_a_reference():
    """Steps record different sets of names in different orders (thousands of sets: the ones no
    kept step uses are forgotten), some values None; whatever is kept lines up."""
    rng = np.random.default_rng(7)
    extras = [f"e{k}" for k in range(7)]

    def rows():
        for s in range(1, 5_001):
            values = {"loss": float(s), "lr": 0.5}
            if rng.random() < 0.3:
                chosen = [n for n in extras if rng.random() < 0.5]
                rng.shuffle(chosen)
                values.update({n: (None if rng.random() < 0.1 else s + int(n[1:]) / 10) for n in chosen})
                if rng.random() < 0.5:
                    values = dict(reversed(list(values.items())))
            yield s, values

    h = History(1_500, full_bytes=0, min_full=200, thin_every=4)
    written = record_all(h, rows())
    steps = h.series("step").astype(int)
    assert steps[-200:].tolist() == list(range(4_801, 5_001))
    assert steps[0] > 5_000 - 1_500 and np.diff(steps[:-200]).max() <= 4
    assert len(h) < 1_500
    assert_lines_up(h, written)
    d = h.to_dict()
    assert d["step"] == steps.tolist() and all(len(v) == len(steps) for v in d.values())


EXTREME = [1e300, -1e300, 1e-300, 5e-324, 1.7976931348623157e308, 1e200, 1e-12, math.pi, 0.1, 1 / 3, -2.5e-310]


@pytest.mark.parametrize("where", ["full", "thinned"])
def test_float64_values_round_trip_exactly(where):
    """A loss of 1e-300 or 1e300, an exploding gradient norm of 1e200: exact, in the newest steps
    and in the thinned older ones; NaN, inf and None are missing (None in the report)."""
    missing = [None, math.nan, math.inf, -math.inf]
    h = History(2_000, full_bytes=0, min_full=100, thin_every=10)
    rows = []
    for s in range(1, 2_501):
        k = s % len(EXTREME)
        values = {"loss": EXTREME[k], "x.grad_norm": EXTREME[(k + 3) % len(EXTREME)], "x.sparsity": s * 1e-4}
        if s % 10 == 0:
            values["val_loss"] = (EXTREME + missing)[(s // 10) % (len(EXTREME) + len(missing))]
        rows.append((s, values))
    written = record_all(h, rows)
    steps = h.series("step").astype(int)
    part = steps[-100:] if where == "full" else steps[:-100]
    assert len(part) and all(s in written for s in part)
    keep = np.isin(steps, part)
    for name in ("loss", "x.grad_norm", "x.sparsity", "val_loss"):
        got = h.series(name)[keep]
        want = np.array([written_value(written, s, name) for s in part])
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert np.array_equal(np.signbit(got), np.signbit(want))
        assert got.dtype == np.float64
    assert set(EXTREME) <= set(h.series("loss")[keep].tolist())
    d = json.loads(json.dumps(h.to_dict(), allow_nan=False))    # JSON-clean
    for i, s in enumerate(steps):
        if not keep[i]:
            continue
        assert d["step"][i] == s and d["loss"][i] == written[s]["loss"]
        v = written[s].get("val_loss")
        assert d["val_loss"][i] == (v if v is not None and math.isfinite(v) else None)
    last = rows[-1][1]
    assert h.last("loss") == last["loss"] and h.last("x.grad_norm") == last["x.grad_norm"]


# ---------------------------------------------------------------------------------------------
# a 64-layer net: 64 Linear layers of 64 units with ReLU between
# ---------------------------------------------------------------------------------------------

PARAMS = [f"{2 * i}.{w}" for i in range(64) for w in ("weight", "bias")]                 # 128
LAYERS = [str(i) for i in range(128)]                                                     # 128
EVERY_STEP = ["loss", "lr", "penalty"] + [f"{p}.{s}" for p in PARAMS for s in ("grad_norm", "penalty_grad_norm")] \
    + [f"{layer}.{s}" for layer in LAYERS for s in ("grad_out_norm", "mean_local_derivative")]
DETAIL = ["val_loss"] + [f"{p}.{s}" for p in PARAMS
                         for s in ("weight_norm", "update_ratio", "sparsity", "effective_lr")]
CURVATURE = [f"{p}.hessian_diag" for p in PARAMS]
ALL_SERIES = EVERY_STEP + DETAIL + CURVATURE


def deep_net_steps(n: int, dense: bool = False, start: int = 1):
    """What a session of the 64-layer net records: the every-step series; the detail statistics and
    the validation loss every 10 steps; the Hessian diagonal every 100 (or everything every step)."""
    rng = np.random.default_rng(1)
    values = dict(zip(ALL_SERIES, rng.lognormal(size=len(ALL_SERIES)).tolist()))
    every = {k: values[k] for k in EVERY_STEP}
    detail = {**every, **{k: values[k] for k in DETAIL}}
    curvature = {**every, **{k: values[k] for k in CURVATURE}}
    for s in range(start, start + n):
        if dense:
            yield s, values
        else:
            yield s, curvature if s % 100 == 1 else detail if s % 10 == 0 else every


def values_kept(h: History) -> int:
    return sum(int(np.isfinite(h.series(name)).sum()) for name in h.names()[1:])


@pytest.mark.parametrize("dense, limit", [(False, 16e6), (True, 20e6)])
def test_a_64_layer_nets_history_of_10000_steps_stays_under_20_mb(dense, limit):
    """1,156 series (128 parameters x 7, 128 layers x 2, 4 scalars), 10,000 steps: under 20 MB
    (16 MB as a session writes them), where a dense float64 table took 164 MB. `nbytes` is the
    truth: it covers every value kept and everything the history allocated; and no moment holds
    an old and a new copy of its tables (the traced peak is what it ends with)."""
    rows = list(deep_net_steps(10_000, dense))
    assert len(ALL_SERIES) == 1_156
    h = History(10_000)
    tracemalloc.start()
    try:
        for step, values in rows:
            h.record(step, values)
        h.series("loss")
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert h.nbytes < limit
    assert len(h.names()) == 1 + 1_156 and h.total == 10_000
    assert values_kept(h) * 8 <= h.nbytes <= values_kept(h) * 8 * 1.15 + 1e6
    assert current <= h.nbytes + 1.5e6          # besides its arrays: the names and their positions
    assert peak <= current + 1.5e6
    steps = h.series("step")
    assert steps[-1000:].tolist() == list(range(9_001, 10_001))
    if not dense:   # every detail and curvature measurement is still there
        assert steps[np.isfinite(h.series("0.weight.update_ratio"))].tolist() == list(range(10, 10_001, 10))
        assert steps[np.isfinite(h.series("0.weight.hessian_diag"))].tolist() == list(range(1, 10_001, 100))


def test_memory_and_record_cost_stay_flat_however_long_it_runs():
    """Past its capacity a history neither grows nor slows down: the same memory (give or take a
    chunk being filled and one being emptied) and the same cost per step at 6 x its capacity as
    at 1.5 x."""
    h = History(2_000, min_full=200, full_bytes=200 * 600 * 8)
    rows = list(deep_net_steps(12_000))
    sizes = []

    def batch(start: int, n: int = 500) -> float:
        t = time.perf_counter()
        for step, values in rows[start:start + n]:
            h.record(step, values)
        sizes.append(h.nbytes)
        return (time.perf_counter() - t) / n

    for start in range(0, 3_000, 500):
        batch(start)
    early = min(batch(start) for start in range(3_000, 5_000, 500))
    for start in range(5_000, 10_000, 500):
        batch(start)
    late = min(batch(start) for start in range(10_000, 12_000, 500))
    chunk = h._chunks.size * 8
    settled = sizes[6:]                     # from 1.5 x the capacity on
    assert max(settled) - min(settled) <= 2 * chunk
    assert late < 3 * early


def test_a_reader_on_another_thread_sees_whole_steps():
    """The worker may send the history from its flusher thread while the training thread records:
    every read is of whole steps, and `to_dict` of one moment (all series as long as 'step')."""
    h = History(3_000, full_bytes=0, min_full=300, thin_every=5)
    names = [f"s{k}" for k in range(40)]
    done = threading.Event()

    def train():
        try:
            for step in range(1, 30_001):
                values = {name: step + k for k, name in enumerate(names)}
                if step % 4 == 0:
                    values["sparse"] = -step
                h.record(step, values)
        finally:
            done.set()

    thread = threading.Thread(target=train)
    thread.start()
    reads = 0
    try:
        while not done.is_set() or not reads:
            d = h.to_dict()
            steps = np.array(d["step"], dtype=float)
            assert all(len(v) == len(steps) for v in d.values())
            for k in (0, 17, 39):
                np.testing.assert_array_equal(d.get(f"s{k}", steps + k), steps + k)
            sparse = np.array([np.nan if v is None else v for v in d.get("sparse", [None] * len(steps))])
            np.testing.assert_array_equal(sparse, np.where(steps % 4 == 0, -steps, np.nan))
            reads += 1
    finally:
        thread.join()
    assert reads and h.total == 30_000


def test_the_wire_spaces_a_thinned_history_evenly_in_steps():
    """The front end's plots get points evenly spaced in steps, not in the history's rows (its
    rows are dense at the newest steps and thinned before them), and a series measured every
    50 steps keeps its measurements in the thinned part too."""
    from calcml.debug import wire
    from helpers import history_over_the_wire
    h = History(10_000, full_bytes=100 * 2 * 8, min_full=1, thin_every=10)
    for s in range(1, 10_001):
        values = {"loss": 1.0 / s, "lr": 0.1}
        if s % 50 == 0:
            values["0.weight_norm"] = float(s)
        h.record(s, values)
    sent = wire.history_to_wire(h, max_points=100)
    steps = np.array(sent["step"])
    gaps = np.diff(steps)
    assert len(steps) >= 95 and 85 <= gaps.min() and gaps.max() <= 115   # about 10,000/99 apart
    norms = history_over_the_wire(h, max_points=100)["0.weight_norm"]
    measured = norms[np.isfinite(norms)]
    assert len(measured) >= 95 and np.all(measured % 50 == 0) and np.all(np.diff(measured) > 0)
    rows = h.series("step")
    assert np.count_nonzero(rows <= 9_900) < 1_000 < len(rows)    # thinned before the newest 100


def test_the_wire_reads_every_series_from_one_moment_while_steps_are_recorded():
    """A history sent while another thread records steps (a training script's loop, or a step
    that outlasts the publish period) has one value per step in every series."""
    import threading
    from calcml.debug import wire
    h = History(10_000)
    stop = threading.Event()

    def record():
        s = 0
        while not stop.is_set():
            s += 1
            h.record(s, {"loss": 1.0 / s, **{f"{i}.weight.grad_norm": float(s) for i in range(40)}})

    writer = threading.Thread(target=record, daemon=True)
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)               # threads take turns often: between any two reads
    writer.start()
    sent = 0
    try:
        while len(h) < 50:
            stop.wait(0.001)
        while sent < 15:
            frame = wire.encode({"type": "history", "series": wire.history_to_wire(h)})
            wire.decode_message(frame)        # FrameError if any series' length differs from the steps'
            sent += 1
    finally:
        sys.setswitchinterval(switching)
        stop.set()
        writer.join(10)
    assert len(h) > 50
