"""A quantity measured every k steps (NaN between) is drawn as what was measured: every plot
holds each measurement until the next and then steps to it (never a slope or a jump between
two measurements that no measurement shows), and sparklines have no holes between measurements
and no stretch that mixes a held value with a new one. A flat series still looks flat."""
import asyncio

import numpy as np
import pytest
from textual.app import App
from textual.containers import Vertical

from calcml.tui.widgets.common import SPARK, held, sparkline
from calcml.tui.widgets.edge_plot import EdgePlot
from calcml.tui.widgets.elbo_plot import ElboPlot
from calcml.tui.widgets.layer_history_plot import LayerHistoryPlot
from calcml.tui.widgets.loss_plot import LossPlot
from calcml.tui.widgets.sigma_plot import SigmaPlot

STEPS = np.arange(1, 241, dtype=float)
MEASURED = np.arange(0, 240, 10)          # steps 1, 11, 21, ... (every 10)


def every_tenth(values) -> np.ndarray:
    out = np.full(len(STEPS), np.nan)
    out[MEASURED] = values
    return out


def assert_held(x, y, steps, values):
    """The line (x, y) is flat between measurements at the earlier one, and changes only at a
    measured step (or holds the last one to the end)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    for (x0, y0), (x1, y1) in zip(zip(x, y), zip(x[1:], y[1:])):
        if x1 > x0:
            assert y0 == y1, f"a slope from step {x0} ({y0}) to {x1} ({y1})"
        else:
            assert x0 == x1 and x0 in steps, f"a jump at step {x0}, where nothing was measured"
    for s in steps[(steps > x[0]) & (steps < x[-1])]:   # between two measurements: the earlier one
        for mid in (s - 5, s - 1):
            if mid > x[0]:
                earlier = values[steps <= mid][-1]
                at = y[np.searchsorted(x, mid, side="right") - 1]
                assert at == pytest.approx(earlier), (mid, at, earlier)


def test_held_holds_each_measurement_until_the_next_and_the_last_to_the_end():
    values = every_tenth(np.linspace(1.0, 3.0, len(MEASURED)))
    x, y = held(STEPS, values, 1000, until=240)
    assert_held(x, y, STEPS[MEASURED], values[MEASURED])
    assert x[-1] == 240 and y[-1] == values[MEASURED][-1]
    x, y = held(STEPS, np.full(len(STEPS), np.nan), 100)
    assert len(x) == 0


def _capture(widget) -> list:
    lines = []
    original = widget.plt.plot

    def plot(x, y, *args, **kwargs):
        lines.append((list(x), list(y)))
        return original(x, y, *args, **kwargs)
    widget.plt.plot = plot
    return lines


class _Plots(App):
    def compose(self):
        with Vertical():
            for cls in (SigmaPlot, EdgePlot, LayerHistoryPlot, LossPlot, ElboPlot):
                yield cls()


@pytest.mark.parametrize("which", ["sigma", "edge", "layer_history", "val_loss", "elbo"])
def test_every_plot_of_a_series_measured_every_k_steps_holds_it_between(which):
    """σ (the Bayesian view), the lr edge (curvature), the update ratio (inspector), the
    validation loss (main screen), the ELBO's terms: no value drawn between two measurements
    other than the earlier one."""
    measured = np.geomspace(0.05, 0.08, len(MEASURED)) * (1 + 0.3 * (np.arange(len(MEASURED)) % 2))
    values = every_tenth(measured)
    history = {"step": STEPS, "loss": np.linspace(1, 0.5, len(STEPS)), "lr": np.full(len(STEPS), 0.01),
               "0.posterior_sigma": values, "curvature.lr_edge": values, "0.weight.update_ratio": values,
               "val_loss": values, "expected_log_likelihood": values, "kl": values}
    out = {}

    async def body():
        app = _Plots()
        async with app.run_test(size=(120, 80)) as pilot:
            await pilot.pause()
            widget, call = {
                "sigma": (SigmaPlot, lambda p: p.show(history, ["0"])),
                "edge": (EdgePlot, lambda p: p.show(history, "2/λ")),
                "layer_history": (LayerHistoryPlot, lambda p: p.show(history, "t", [("0.weight", "0.weight.update_ratio")])),
                "val_loss": (LossPlot, lambda p: p.show(history)),
                "elbo": (ElboPlot, lambda p: p.show(history)),
            }[which]
            plot = app.query_one(widget)
            out["lines"] = _capture(plot)
            call(plot)
            plot.render()
    asyncio.run(body())
    lines = out["lines"]
    log = which in ("sigma", "edge", "layer_history")
    expected = np.log10(measured) if log else measured
    mine = [(x, y) for x, y in lines if len(x) and np.isclose(y[0], expected[0])]
    assert mine, lines
    for x, y in mine:
        assert_held(x, y, STEPS[MEASURED], expected)


def test_a_sparkline_of_a_series_measured_every_k_steps_has_no_holes_and_no_blends():
    values = np.array([1.0, np.nan, np.nan, np.nan, 5.0, np.nan])    # two stretches of three steps
    assert sparkline(values, 2, carry=True) == "▁█"                   # 1, then 5: each a measurement
    sparse = every_tenth(np.linspace(1.0, 2.0, len(MEASURED)))[:60]
    for width in (6, 12, 60):
        line = sparkline(sparse, width, carry=True)
        assert len(line) == width and " " not in line, line
    late = np.r_[np.full(5, np.nan), sparse[:20]]
    line = sparkline(late, 25, carry=True)
    assert line.startswith("     ") and " " not in line[5:]           # blank only before the first one


def test_a_flat_series_measured_every_k_steps_still_looks_flat():
    rng = np.random.default_rng(1)
    flat = every_tenth(3.65 * (1 + 1e-5 * rng.standard_normal(len(MEASURED))))
    assert set(sparkline(flat, 20, carry=True)) == {SPARK[3]}
    assert set(sparkline(flat[::-1], 12, carry=True)) <= {SPARK[3]}


def test_the_bayesian_trends_use_the_measurements_not_blends_of_them():
    from calcml.tui.text_bayes import noise_table
    from rich.console import Console
    import io

    class B:
        gradient_noise = {"0.weight_mu": 1.2}
        noise_step = 40
    values = np.full(24, np.nan)                  # 24 steps in 12 characters: two steps each
    values[[0, 9, 17]] = [1.0, 5.0, 3.0]          # a held 1 and a new 5 share a character: it shows 5
    history = {"step": np.arange(1, 25, dtype=float), "0.weight_mu.gradient_noise": values}
    console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
    console.print(noise_table(B(), history))
    row = next(line for line in console.export_text().splitlines() if "0.weight_mu" in line)
    assert row.rstrip().endswith("▁▁▁▁████▅▅▅▅")
