"""Every statistic on the numbers overflow produces: inf, NaN, 1e308 and −1e308, the largest float,
denormals (5e-324), their mixes with ordinary values, empty arrays, integers, float32 near 3e38.

Overflow is what the debugger exists to show, so none of these may raise, or warn, or come out
absurd: histograms have finite, non-decreasing edges and count every finite value; norms are ≥ 0,
inf or NaN as the entries say (and finite for finite entries whose norm is a float); formatted
numbers are short; sparklines, histograms and plots draw. And end to end: a model whose weights
are 1e308, or one trained with lr = 1e6, runs headless to a report that says where it went
non-finite, with exit 0 and no traceback.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
from rich.text import Text
from textual.app import App
from textual.containers import Vertical

from calcml.debug import probes
from calcml.debug import snapshot as records
from calcml.debug.tracesummary import ArrayStats
from calcml.tui.format import layer_rows, num, pct
from calcml.tui.text_bayes import _n_data, change_text, hmc_lines, sigma_range
from calcml.tui.text_curvature import newton_lines, param_rows
from calcml.tui.text_histogram import axis_line, histogram_lines, rebin
from calcml.tui.text_status import status_text
from calcml.tui.widgets.acceptance_plot import AcceptancePlot
from calcml.tui.widgets.common import SPARK, fit_exponent, group_means, log_ticks, sparkline
from calcml.tui.widgets.edge_plot import EdgePlot
from calcml.tui.widgets.elbo_plot import ElboPlot
from calcml.tui.widgets.gradient_flow_plot import GradientFlowPlot
from calcml.tui.widgets.guarded_plot import GuardedPlot
from calcml.tui.widgets.loss_plot import LossPlot
from calcml.tui.widgets.newton_plot import NewtonPlot
from calcml.tui.widgets.sigma_plot import SigmaPlot
from calcml.tui.widgets.two_axis_plot import linear_ticks, robust_range

inf, nan = math.inf, math.nan
MAX = float(np.finfo(np.float64).max)
N = 7
CASES = {
    "inf": [inf],
    "-inf": [-inf],
    "nan": [nan],
    "1e308": [1e308] * N,
    "-1e308": [-1e308] * N,
    "max": [MAX] * N,
    "-1e308,1e308": [-1e308, 1e308],
    "-max,0,max": [-MAX, 0.0, MAX],
    "1e200": [1e200] * N,
    "5e-324": [5e-324] * N,
    "5e-324,1e-323": [5e-324, 1e-323],
    "-5e-324,0,5e-324": [-5e-324, 0.0, 5e-324],
    "1e-170": [1e-170] * N,
    "mixed": [1.0, nan, inf, -1e308, 5e-324, 0.0, -2.5],
    "ordinary,1e308": [0.1, -0.3, 1e308, 2.0],
    "ordinary,inf,nan": [0.1, -0.3, inf, nan, 2.0],
    "zeros": [0.0] * N,
    "empty": [],
    "float32 ±3e38": np.array([3e38, -3e38, 1.0], dtype=np.float32),
    "float32 3e38": np.full(N, 3e38, dtype=np.float32),
    "float32 1e20": np.full(N, 1e20, dtype=np.float32),
    "float32 inf": np.array([np.inf, 1.0], dtype=np.float32),
    "int": np.arange(-3, 4),
    "int 2**40": np.full(N, 2 ** 40),
}
NAMES = list(CASES)
SCALARS = [None, 0.0, -0.0, nan, inf, -inf, 1e308, -1e308, MAX, -MAX, 5e-324, -5e-324, 1e-323, 3e38,
           np.float32(3e38), np.float32(np.nan), np.int64(2 ** 62), 10 ** 400, -10 ** 400, 0.5, 1e-3, 9999.5, True]


def case(name: str) -> np.ndarray:
    value = CASES[name]
    return value.copy() if isinstance(value, np.ndarray) else np.array(value, dtype=np.float64)


def finite_of(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


@contextmanager
def quiet():
    """Fail on any warning (numpy's overflow and invalid-value warnings included): quiet means quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# -- histograms ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bins", [1, 30])
@pytest.mark.parametrize("name", NAMES)
def test_histogram_has_finite_ordered_edges_and_counts_every_finite_value(name, bins):
    a = case(name)
    with quiet():
        counts, edges = probes.histogram(a, bins)
    assert counts.dtype == np.int64 and counts.shape == (bins,)
    assert edges.dtype == np.float64 and edges.shape == (bins + 1,)
    assert np.all(np.isfinite(edges)), edges
    assert np.all(edges[1:] >= edges[:-1]), edges
    assert np.all(counts >= 0)
    good = finite_of(a)
    assert int(counts.sum()) == good.size
    if good.size:
        assert edges[0] <= good.min() and good.max() <= edges[-1]
        if np.all(edges[1:] > edges[:-1]):   # each value in a bin that holds it (edges repeat only between denormals)
            reference, _ = np.histogram(good, bins=edges)
            on_edges = np.isin(good, edges[1:-1]).sum()
            assert np.abs(reference - counts).sum() <= 2 * on_edges, (counts, reference)


@pytest.mark.parametrize("value", [1e308, -1e308, MAX, -MAX, 1e200, 1e16, 5e-324, 0.0, -2.5])
def test_histogram_of_one_repeated_value_puts_them_all_in_one_bin_around_it(value):
    with quiet():
        counts, edges = probes.histogram(np.full(9, value), 30)
    assert counts.sum() == 9 and np.count_nonzero(counts) == 1
    assert np.all(np.isfinite(edges)) and np.all(edges[1:] > edges[:-1])
    i = int(np.flatnonzero(counts)[0])
    assert edges[i] <= value <= edges[i + 1]
    if abs(value) < 1e15:   # ordinary: numpy's own answer, range value ± ½
        expected, expected_edges = np.histogram(np.full(9, value), 30)
        assert np.array_equal(counts, expected) and np.array_equal(edges, expected_edges)


def test_histogram_of_a_range_wider_than_the_largest_float():
    a = np.array([-1e308, -5e307, 0.0, 5e307, 1e308])
    with quiet():
        counts, edges = probes.histogram(a, 4)
    assert edges[0] == -1e308 and edges[-1] == 1e308
    np.testing.assert_allclose(edges, [-1e308, -5e307, 0.0, 5e307, 1e308], rtol=1e-12, atol=1e294)
    assert counts.tolist() == [1, 1, 1, 2] or counts.tolist() == [1, 1, 2, 1]
    assert counts.sum() == 5


def test_histogram_of_denormals_bins_them_apart():
    a = np.array([0.0, 5e-324, 1e-323, 1.5e-323])
    with quiet():
        counts, edges = probes.histogram(a, 3)
    assert counts.tolist() == [1, 1, 2]
    assert edges[0] == 0.0 and edges[-1] == 1.5e-323


def test_histogram_of_integers_bools_and_float32():
    with quiet():
        counts, edges = probes.histogram(np.arange(10), 5)
        assert counts.tolist() == [2, 2, 2, 2, 2] and edges.dtype == np.float64
        assert probes.histogram(np.array([True, False, True]), 2)[0].tolist() == [1, 2]
        counts, edges = probes.histogram(np.array([3e38, -3e38, 0.0], dtype=np.float32), 3)
        assert counts.tolist() == [1, 1, 1] and edges.dtype == np.float64
        assert edges[0] == pytest.approx(-3e38, rel=1e-7) and edges[-1] == pytest.approx(3e38, rel=1e-7)


def test_histogram_with_nothing_finite_is_empty_over_minus_one_to_one():
    for a in ([], [nan, inf, -inf], np.zeros((0, 3))):
        with quiet():
            counts, edges = probes.histogram(np.asarray(a, dtype=float), 4)
        assert counts.tolist() == [0, 0, 0, 0]
        assert edges.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]


# -- norms, sparsity, activations ------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_norms_are_never_an_error_and_finite_for_finite_entries(name):
    a = case(name)
    with quiet():
        sq = probes.sq_norm(a)
        n = probes.norm(a)
        checked, all_finite = probes.checked_norm(a)
    wide = np.asarray(a, dtype=np.float64).reshape(-1)
    assert all_finite == bool(np.isfinite(wide).all())
    assert checked == n or (math.isnan(checked) and math.isnan(n))
    if np.isnan(wide).any():
        assert math.isnan(n) and math.isnan(sq)
    elif np.isinf(wide).any():
        assert n == inf and sq == inf
    else:
        expected = math.hypot(*wide.tolist()) if wide.size else 0.0   # inf only past the largest float
        assert n == pytest.approx(expected, rel=1e-12, abs=0.0) if expected else n == 0.0
        assert sq >= 0.0
        reference_sq = math.fsum(x * x for x in wide.tolist())   # Python floats: inf past the top
        assert sq == pytest.approx(reference_sq, rel=1e-12, abs=1e-300)


def test_the_norm_of_a_finite_gradient_of_1e200_is_finite():
    """Σg² of 1e200s overflows, but the gradient is finite, and its norm 1e200·√n a float: the
    session must not mistake it for a non-finite one (checked_norm says all entries finite)."""
    g = np.full((30, 40), 1e200)
    with quiet():
        assert probes.sq_norm(g) == inf
        n, finite = probes.checked_norm(g)
    assert finite and n == pytest.approx(1e200 * math.sqrt(1200), rel=1e-12)
    with quiet():
        assert probes.checked_norm(np.full(4, MAX)) == (inf, True)        # finite entries, norm past the top
        assert probes.norm(np.full(10, 1e-170)) == pytest.approx(1e-170 * math.sqrt(10), rel=1e-12)
        assert probes.norm(np.full(4, 5e-324)) > 0


@pytest.mark.parametrize("name", NAMES)
def test_count_small_counts_within_the_array(name):
    a = case(name)
    mask = np.empty(max(a.size, 1), dtype=bool)
    with quiet():
        small = probes.count_small(a, 1e-3, mask)
    with np.errstate(invalid="ignore"):
        assert small == int(np.count_nonzero(np.abs(a) < 1e-3))


class _Leaky:
    negative_slope = 0.01


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("name", NAMES)
def test_activation_statistics_on_any_output(name, kind):
    out = case(name).astype(np.float64).reshape(1, -1)
    with quiet():
        d = probes.local_derivative(kind, _Leaky(), out)
        mean, dead, saturated = probes.activation_stats(kind, _Leaky(), out, 0.01)
    assert np.shape(d) == out.shape
    if out.size == 0:
        assert math.isnan(mean)
        return
    assert isinstance(mean, float)
    for fraction in (dead, saturated):
        assert fraction is None or 0.0 <= fraction <= 1.0


def test_the_mean_derivative_of_finite_derivatives_whose_sum_overflows_is_finite():
    out = np.full((4, 3), -1e154)   # tanh's 1 − out² ≈ −1e308 each: the sum overflows, the mean does not
    with quiet():
        mean, _, _ = probes.activation_stats("tanh", None, out, 0.01)
    assert mean == pytest.approx(1.0 - 1e308, rel=1e-12)


# -- step-into's value statistics --------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_array_stats_on_any_values(name):
    a = case(name)
    with quiet():
        stats = ArrayStats.of(a)
    good = finite_of(a)
    assert stats.shape == a.shape
    assert stats.non_finite == a.size - good.size
    assert stats.zeros == int(np.count_nonzero(good == 0))
    if good.size == 0:
        assert all(math.isnan(v) for v in (stats.mean, stats.std, stats.min, stats.max))
        return
    assert stats.min == good.min() and stats.max == good.max()
    assert stats.min <= stats.mean <= stats.max
    assert math.isfinite(stats.mean)            # a mean of finite floats is a finite float
    assert stats.std >= 0 and math.isfinite(stats.std)


def test_array_stats_of_1e308s_say_1e308_not_inf():
    with quiet():
        same = ArrayStats.of(np.full(10, 1e308))
        spread = ArrayStats.of(np.array([-1e308, 1e308]))
        tiny = ArrayStats.of(np.full(3, 5e-324))
    assert same.mean == pytest.approx(1e308, rel=1e-12) and same.std == 0.0
    assert spread.mean == 0.0 and spread.std == pytest.approx(1e308, rel=1e-12)
    assert tiny.mean == 5e-324 and tiny.std == 0.0


# -- formatted numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_formatted_numbers_are_short(value):
    for digits in (2, 3, 4):
        text = num(value, digits)
        assert text and len(text) <= 11, text
    text = pct(value)
    assert text and len(text) <= 11, text


def test_formatted_extremes_read_right():
    assert num(1e308) == "1.00e+308" and num(-MAX) == "-1.80e+308" and num(5e-324) == "4.94e-324"
    assert num(10 ** 400) == "inf" and num(-10 ** 400) == "-inf"
    assert pct(0.25) == "25%" and pct(nan) == "nan" and pct(inf) == "inf" and pct(None) == "-"
    assert pct(1e307) == "1.00e+309%"


def test_layer_rows_with_extreme_numbers():
    p = records.ParamStats("0.weight", (2, 2), inf, nan, 1e308, MAX, 5e-324, nan, 1e308)
    layer = records.LayerStats("0", "Linear", {"weight": p}, (4, 2), 1e308, 5e-324, "tanh", inf, None, 1e300)
    with quiet():
        (row,) = layer_rows([layer])
    assert all(cell and len(cell) <= 11 for cell in row), row


# -- sparklines, histograms -----------------------------------------------------------------------------

SPARKS = set(SPARK) | set(" ")


def log_sparkline(values, width):
    return sparkline(values, width, log=True)


@pytest.mark.parametrize("repeat", [1, 20])
@pytest.mark.parametrize("name", NAMES)
def test_sparklines_draw_any_series(name, repeat):
    values = np.tile(case(name).astype(np.float64), repeat)
    for draw, width in ((log_sparkline, 10), (sparkline, 12)):
        with quiet():
            line = draw(values, width)
        assert len(line) == min(len(values), width)
        assert set(line) <= SPARKS, line


def test_sparklines_of_1e308s_are_not_blank():
    """Groups of 1e308s average to 1e308 (not to an overflowed inf, which would draw a gap)."""
    values = np.array([1e308] * 40 + [1e307] * 40)
    with quiet():
        assert " " not in log_sparkline(values, 10)
        assert " " not in sparkline(values, 10)
        means = group_means(values, 4)
    np.testing.assert_allclose(means, [1e308, 1e308, 1e307, 1e307], rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_histogram_widget_draws_any_histogram(name):
    counts, edges = probes.histogram(case(name), 30)
    ordinary = probes.histogram(np.linspace(-1, 1, 50), 30)
    for series in ([("", counts, edges, "cyan")], [("now", counts, edges, "cyan"), ("step 0", *ordinary, "dim")]):
        with quiet():
            lines = histogram_lines(series, 60, rows=3)
        assert all(isinstance(line, Text) for line in lines)
        assert len(lines) == 3 * len(series) + 1
        assert all(len(line.plain) <= 60 for line in lines)


@pytest.mark.parametrize("lo,hi", [(-MAX, MAX), (-1e308, 1e308), (1e308, MAX), (5e-324, 1e-323), (0.0, 5e-324),
                                   (-5e-324, 5e-324), (-inf, inf), (nan, 1.0), (-1.0, 1.0)])
def test_rebin_and_axis_line_on_extreme_ranges(lo, hi):
    t = np.linspace(0, 1, 11)
    with np.errstate(all="ignore"):
        edges = lo * (1 - t) + hi * t if math.isfinite(lo) and math.isfinite(hi) else np.linspace(-1, 1, 11)
    counts = np.arange(10)
    with quiet():
        out = rebin(counts, edges, lo, hi, 20)
        axis = axis_line(lo, hi, 40)
    assert out.shape == (20,) and np.all(np.isfinite(out)) and np.all(out >= 0) and out.max() <= counts.sum()
    assert len(axis) == 40
    if lo < 0 < hi and math.isfinite(hi - lo):
        assert "0" in axis


def test_axis_line_puts_zero_in_the_middle_of_a_range_wider_than_the_largest_float():
    axis = axis_line(-1e308, 1e308, 41)
    assert axis.index("0", len("-1.00e+308")) == 20


# -- plots --------------------------------------------------------------------------------------------

def _history(values: np.ndarray) -> dict:
    """Every series the plots read, each holding `values` (after a few ordinary steps)."""
    values = np.concatenate([[0.5, 0.4, 0.3], np.asarray(values, dtype=np.float64).reshape(-1)])
    names = ("loss", "val_loss", "0.weight.grad_norm", "lr", "curvature.lr_edge", "curvature.lambda_max",
             "newton.grad_norm", "expected_log_likelihood", "kl", "hmc.acceptance_rate", "hmc.potential",
             "0.posterior_sigma")
    return {"step": np.arange(1, len(values) + 1), **{n: values.copy() for n in names}}


class _Plots(App):
    def compose(self):
        with Vertical():
            for cls in (GradientFlowPlot, LossPlot, EdgePlot, NewtonPlot, ElboPlot, AcceptancePlot, SigmaPlot):
                yield cls()


def _draw_all(app, history) -> dict:
    shown = {}
    for plot, call in ((GradientFlowPlot, lambda p: p.show(history, [("0", "0.weight")])),
                       (LossPlot, lambda p: p.show(history)),
                       (EdgePlot, lambda p: p.show(history, "2/λ_max")),
                       (NewtonPlot, lambda p: p.show(history)),
                       (ElboPlot, lambda p: p.show(history)),
                       (AcceptancePlot, lambda p: p.show(history)),
                       (SigmaPlot, lambda p: p.show(history, ["0"]))):
        widget = app.query_one(plot)
        call(widget)
        rendered = widget.render()
        shown[plot.__name__] = rendered.plain if isinstance(rendered, Text) else str(rendered)
    return shown


def test_every_plot_builds_with_any_values():
    """The main screen's, the curvature view's and the Bayesian view's plots, fed each case (after
    three ordinary steps): building the figure never raises, and never needs the last guard."""
    failures = []

    async def body():
        app = _Plots()
        async with app.run_test(size=(100, 70)) as pilot:
            await pilot.pause()
            for name in NAMES:
                history = _history(case(name))
                try:
                    shown = _draw_all(app, history)
                except Exception as error:   # noqa: BLE001 (collected, so every case is reported)
                    failures.append((name, "raised", repr(error)))
                    continue
                for plot, text in shown.items():
                    if "cannot draw" in text:
                        failures.append((name, plot, text))
    asyncio.run(body())
    assert not failures, failures


def test_a_plot_of_1e308_losses_is_scaled_with_real_ticks():
    with quiet():
        assert fit_exponent(np.array([1e308, 5e307])) == 1024
        assert fit_exponent(np.array([5e-324, 1e-323])) < -1000
        assert fit_exponent(np.array([0.1, 2.0, 1e5])) == 0
        assert fit_exponent(np.array([])) == 0

    async def body():
        app = _Plots()
        async with app.run_test(size=(100, 70)) as pilot:
            await pilot.pause()
            plot = app.query_one(LossPlot)
            plot.show({"step": np.arange(1, 5), "loss": np.array([1e308, 5e307, 1e308, 2e307])})
            text = plot.render().plain
            assert "cannot draw" not in text and ("e307" in text or "e308" in text), text
    asyncio.run(body())


def test_the_last_guard_turns_a_plot_plotext_cannot_draw_into_a_note():
    class Raw(GuardedPlot):
        pass

    class One(App):
        def compose(self):
            yield Raw()

    async def body():
        app = One()
        async with app.run_test(size=(60, 20)) as pilot:
            await pilot.pause()
            plot = app.query_one(Raw)
            plot.plt.plot([0, 1], [0.0, 1.0])
            plot.plt.ylim(-inf, inf)   # what plotext itself cannot place
            assert "cannot draw this plot" in plot.render().plain
    asyncio.run(body())


def test_linear_and_log_ticks_at_the_float_limits():
    with quiet():
        positions, labels = log_ticks(308.0, math.log10(MAX))
        assert labels and all(len(label) <= 11 for label in labels)
        positions, labels = log_ticks(-323.3, -323.3)
        assert labels == [num(10 ** -323.3)]
        positions, labels = linear_ticks(0.5, MAX / 2.0 ** 1023 / 2, 4, exponent=1024)
        assert labels[0] == num(2.0 ** 1023, 4) and labels[-1] == num(MAX, 4)
    assert robust_range(np.array([1e308, -1e308, 0.0] * 5)) is not None


# -- text panels and the status bar -----------------------------------------------------------------------

@pytest.mark.parametrize("value", [inf, -inf, nan, 1e308, -MAX, 5e-324, 0.0])
def test_text_panels_with_extreme_numbers(value):
    with quiet():
        assert _n_data(-1e308, 5e-324) is None            # n = inf: not a count of data
        assert _n_data(value, 1.0) is None or isinstance(_n_data(value, 1.0), int)
        change_text(value)
        hmc_lines({"acceptance_rate": value, "hamiltonian_error": value, "step_size": value, "potential": value,
                   "kept": 3, "step": 30, "accepted": True, "message": "ok"})
        newton_lines({"grad_norm": value, "newton_decrement": value, "min_eigenvalue": value,
                      "max_eigenvalue": value, "condition_number": value, "damping_used": value,
                      "damping": value, "step_norm": value, "positive_definite": True, "message": "m"})
        p = records.ParamStats("w", (2,), 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, effective_lr=value, hessian_diag=value)
        param_rows([p], value, "Adam", None)
        layer = SimpleNamespace(params={"weight_rho": SimpleNamespace(name="0.weight_rho")})
        edges = np.array([-MAX, 0.0, MAX])
        sigma_range(layer, {"0.weight_rho.weight_hist": (np.array([1, 1]), edges)})


@pytest.mark.parametrize("value", [inf, -inf, nan, 1e308, -MAX, 5e-324, 0.0])
def test_status_bar_with_extreme_numbers(value):
    snapshot = SimpleNamespace(step=3, epoch=1, loss=value, val_loss=value, lr=value, regularizer=("l2", value),
                               steps_per_sec=value, hit=None)
    state = SimpleNamespace(model={"name": "m.py", "description": "d"}, snapshot=snapshot, state="running", stop=None,
                            loading=None)
    with quiet():
        text = status_text(state).plain
    assert len(text.splitlines()[1]) < 120, text


# -- end to end: headless runs that overflow -----------------------------------------------------------

HUGE_WEIGHTS = """\
import numpy as np
import calcml as cm
import calcml.nn.functional as F

X = np.random.default_rng(0).normal(size=(32, 2))
data = (X, (X[:, :1] > 0).astype(float))
model = cm.nn.Sequential(cm.nn.Linear(2, 4), cm.nn.Tanh(), cm.nn.Linear(4, 1))
for p in model.parameters():
    p.data[...] = 1e308


def loss(pred, target):
    return F.mse_loss(pred, target)


optimizer = cm.optim.SGD(model.parameters(), lr=0.01)
"""

HUGE_LR = HUGE_WEIGHTS.replace("for p in model.parameters():\n    p.data[...] = 1e308\n", "").replace(
    "lr=0.01", "lr=1e6")

HUGE_FINITE_GRADIENT = """\
import numpy as np
import calcml as cm

X = np.full((8, 4), 1e200)      # every gradient entry about 1e200: finite, though Σg² is not
data = (X, np.zeros((8, 1)))
model = cm.nn.Sequential(cm.nn.Linear(4, 1))


def loss(pred, target):
    return pred.mean()


optimizer = cm.optim.SGD(model.parameters(), lr=1e-300)
"""


def test_the_interface_shows_a_run_that_overflowed_in_every_view(tmp_path):
    """The interface over the same runs: the main screen, the inspector, step-into, the
    regularisation, curvature and Bayesian views all draw, with no traceback on the screen."""
    from calcml.debug import Session, load_model_file
    from calcml.tui.app import DebuggerApp
    from calcml.tui.backend import LocalBackend
    from tui_helpers import screen_text

    async def body(path):
        backend = LocalBackend(Session(load_model_file(str(path))))
        backend.step(30)
        backend.pump(30)
        app = DebuggerApp(backend, clock=lambda: 0.0)
        async with app.run_test(size=(120, 40)) as pilot:
            for key in ("n", "enter", "s", "r", "h", "v"):
                await pilot.press(key)
                backend.pump(1)
                app.poll()
                await pilot.pause()
                text = screen_text(app)
                assert "Traceback" not in text and "cannot draw" not in text, (key, text)
                if key != "n":
                    await pilot.press("escape")
                    await pilot.pause()

    for i, source in enumerate((HUGE_WEIGHTS, HUGE_LR)):
        path = tmp_path / f"model{i}.py"
        path.write_text(source)
        asyncio.run(body(path))


def _headless(tmp_path, source: str, steps: int = 20):
    model = tmp_path / "model.py"
    model.write_text(textwrap.dedent(source))
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}   # numpy's warnings would show
    env["COLUMNS"] = "100"
    result = subprocess.run([sys.executable, "-m", "calcml.tui.cli", str(model), "--headless", "--steps", str(steps),
                             "--json", str(report)], capture_output=True, text=True, timeout=120, env=env,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "internal error" not in output, output
    assert "Warning" not in output, output   # overflow is reported by calcml, not by numpy on stderr

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(report.read_text(), parse_constant=refuse), output


@pytest.mark.parametrize("source", [HUGE_WEIGHTS, HUGE_LR], ids=["weights 1e308", "lr 1e6"])
def test_a_run_that_overflows_ends_in_a_report_that_says_so(tmp_path, source):
    report, output = _headless(tmp_path, source, steps=200)
    assert report["schema"] == "calcml.report/1"
    assert report["state"] in ("stopped", "finished")
    if report["state"] == "stopped":
        assert report["stopped"]["reason"] == "non_finite", report["stopped"]
        assert any(w["kind"] == "non_finite" for w in report["warnings"])


def test_a_finite_gradient_of_1e200_is_not_reported_non_finite(tmp_path):
    """Σg² overflows, yet every entry is finite: an exploding gradient, not a NaN/Inf stop."""
    report, _ = _headless(tmp_path, HUGE_FINITE_GRADIENT, steps=3)
    assert report["stopped"] is None or report["stopped"]["reason"] != "non_finite", report["stopped"]
    assert any(w["kind"] == "exploding_gradient" for w in report["warnings"])
