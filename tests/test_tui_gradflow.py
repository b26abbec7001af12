"""The main screen's gradient flow: a layers × steps heat strip of log10 ‖∇W‖ with the latest
step's bars, readable at 20 layers, with a scale, NaN/Inf and dead layers marked apart; snapshot
images at 80x24 and 160x48 of a 20-layer model."""
import math

import numpy as np

from calcml.debug import Session, load_model_file
from calcml.tui.app import DebuggerApp
from calcml.tui.backend import LocalBackend
from calcml.tui.format import num
from calcml.tui.text_gradflow import (BAD, BAD_MARK, DEAD, DEAD_MARK, PALETTE, flow, gradient_flow_text, scale)
from calcml.tui.widgets.gradient_flow_plot import GradientFlowPlot
from tui_helpers import local, run, settle

DEEP20 = '''"""Twenty sigmoid layers deep: the gradient vanishes on its way back to the input."""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.moons(n=128, noise=0.1, seed=seed)
data = (X, y)
layers = [cm.nn.Linear(2, 8), cm.nn.Sigmoid()]
for _ in range(18):
    layers += [cm.nn.Linear(8, 8), cm.nn.Sigmoid()]
layers += [cm.nn.Linear(8, 2)]
model = cm.nn.Sequential(*layers)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.SGD(model.parameters(), lr=0.1)
'''


def deep20(tmp_path, steps: int = 12) -> LocalBackend:
    path = tmp_path / "deep20.py"
    path.write_text(DEEP20)
    backend = LocalBackend(Session(load_model_file(str(path))))
    backend.step(steps)
    backend.pump(steps)
    return backend


def history_of(columns: dict, steps: int) -> tuple:
    """A history with one weight per layer name, and its (layer, param) list."""
    history = {"step": np.arange(1, steps + 1, dtype=float)}
    for layer, values in columns.items():
        history[f"{layer}.weight.grad_norm"] = np.asarray(values, dtype=float)
    return history, [(layer, f"{layer}.weight") for layer in columns]


def rows(text: str) -> list:
    return text.plain.split("\n")


def test_twenty_layers_each_get_a_row_named_truthfully_in_forward_order(tmp_path):
    backend = deep20(tmp_path)
    from calcml.tui.app import _layer_weight_params
    params = _layer_weight_params(backend.state.model)
    assert len(params) == 20
    lines = rows(gradient_flow_text(backend.state.history, params, 80, 30))
    assert len(lines) == 23                                   # title, axis, 20 layers, scale
    labels = [line.split()[0] for line in lines[2:22]]
    assert labels == [layer for layer, _ in params]
    snap = backend.state.snapshot
    for line, layer in zip(lines[2:22], snap.layers[::2]):    # Linear, Sigmoid, Linear, ...: its ‖∇W‖ now
        assert line.split()[-1] == num(layer.params["weight"].grad_norm), line
    assert "1e" in lines[-1] and "NaN/Inf" in lines[-1] and "dead" in lines[-1]


def test_when_rows_are_short_two_layers_share_one_and_all_are_still_named(tmp_path):
    backend = deep20(tmp_path)
    from calcml.tui.app import _layer_weight_params
    params = _layer_weight_params(backend.state.model)
    lines = rows(gradient_flow_text(backend.state.history, params, 60, 14))
    assert len(lines) == 13
    pairs = [line.split()[0] for line in lines[2:12]]
    names = [layer for layer, _ in params]
    assert pairs == [f"{a}/{b}" for a, b in zip(names[::2], names[1::2])]
    assert all(set(line.split(maxsplit=1)[1].strip()) <= {"▀", "▄", " "} for line in lines[2:12])


def test_each_cell_is_the_colour_of_its_decade_on_the_scale_it_shows():
    history, params = history_of({"0": np.full(10, 1e-9), "2": np.full(10, 1e-5), "4": np.full(10, 0.05)}, 10)
    f = flow(history, params, 10)
    assert (f.lo, f.hi) == (-9, -1)                # 8 decades, one a colour
    assert [set(row) for row in f.cells] == [{0}, {4}, {7}]
    text = gradient_flow_text(history, params, 70, 10)
    assert rows(text)[-1].startswith("1e-9 ████████ 1e-1 (1 decade a colour)")
    styles = {str(span.style) for span in text.spans}
    assert {PALETTE[0], PALETTE[4], PALETTE[7]} <= styles


def test_a_flat_gradient_looks_flat_and_small_models_get_a_scale_at_least_a_decade_wide():
    rng = np.random.default_rng(0)
    noisy = 0.02 * (1 + 1e-3 * rng.standard_normal(30))     # ±0.1%: one colour, not the whole range
    history, params = history_of({"0": noisy, "1": noisy[::-1]}, 30)
    f = flow(history, params, 30)
    assert f.hi - f.lo >= 1
    assert len(set(f.cells.ravel().tolist())) == 1
    assert scale(np.array([-2.0])) == (-2, -1)


def test_nan_inf_and_dead_layers_are_marked_apart_and_never_averaged_away():
    good = np.full(40, 1e-3)
    with_nan = good.copy()
    with_nan[17] = np.nan                           # one NaN in a stretch of several steps
    with_inf = good.copy()
    with_inf[-1] = np.inf
    history, params = history_of({"0": with_nan, "2": np.zeros(40), "4": with_inf, "6": good}, 40)
    f = flow(history, params, 10)                   # 4 steps a column
    assert f.cells[0].tolist().count(BAD) == 1 and f.cells[0][4] == BAD
    assert set(f.cells[1].tolist()) == {DEAD}
    assert f.cells[2][-1] == BAD and set(f.cells[3].tolist()) == {f.cells[3][0]} and f.cells[3][0] >= 0
    lines = rows(gradient_flow_text(history, params, 60, 10))
    strip = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines[2:6]}
    assert strip["0"].count(BAD_MARK) >= 1 and DEAD_MARK * 5 in strip["2"]
    assert strip["4"].rstrip().endswith("inf") and strip["2"].rstrip().endswith("0")
    assert BAD_MARK not in strip["6"] and DEAD_MARK not in strip["6"]


def test_the_bar_at_the_latest_step_grows_with_log10_of_the_gradient():
    history, params = history_of({"0": np.full(5, 1e-8), "2": np.full(5, 1e-4), "4": np.full(5, 1.0)}, 5)
    lines = rows(gradient_flow_text(history, params, 80, 10))
    bars = [line.count("█") for line in lines[2:5]]
    strip = len(lines[2].split()[1])
    lengths = [b - strip for b in bars]
    assert lengths[0] < lengths[1] < lengths[2] and math.isclose(lengths[1] - lengths[0], lengths[2] - lengths[1], abs_tol=1)


def test_the_widget_is_as_tall_as_its_rows_and_follows_the_history(tmp_path):
    backend = local("xor_mlp.py", steps=3)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(140, 40)) as pilot:
            await settle(pilot, lambda: "steps 1–3" in app.query_one(GradientFlowPlot).render().plain)
            plot = app.query_one(GradientFlowPlot)
            assert plot.region.height == 2 + 3                     # two weighted layers
            backend.step(4)
            backend.pump(4)
            await settle(pilot, lambda: "steps 1–7" in plot.render().plain)
    run(body())


# -- what it looks like ------------------------------------------------------------------------------

def _drawn(*keys):
    """Press `keys`, then wait until the gradient flow and the loss plot have been drawn."""
    async def run_before(pilot):
        await pilot.press(*keys)
        await settle(pilot, lambda: "at step" in pilot.app.query_one(GradientFlowPlot).render().plain
                     and "loss" in str(pilot.app.query_one("#loss").render()))
        await pilot.pause()
    return run_before


def test_snapshot_gradient_flow_20_layers_160x48(snap_compare, tmp_path):
    assert snap_compare(DebuggerApp(deep20(tmp_path)), terminal_size=(160, 48), run_before=_drawn())


def test_snapshot_gradient_flow_20_layers_80x24(snap_compare, tmp_path):
    assert snap_compare(DebuggerApp(deep20(tmp_path)), terminal_size=(80, 24), run_before=_drawn("g"))


def test_snapshot_gradient_flow_small_model_160x48(snap_compare):
    assert snap_compare(DebuggerApp(local("xor_mlp.py", steps=30)), terminal_size=(160, 48), run_before=_drawn())
