"""The PyTorch samples' docstrings, followed as written in the interface (see test_tui_samples.py)."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("torch")

from calcml.tui.app import DebuggerApp                 # noqa: E402
from test_tui_inspector import open_inspector_on  # noqa: E402
from tui_helpers import local, plain, run   # noqa: E402


def test_torch_residual_n_steps_and_the_lr_keys_halve_and_double():
    """"Press n to step, [ and ] to halve or double the learning rate and watch the loss plot answer.\""""
    backend = local("torch_residual.py", steps=2)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("n")
            backend.pump(3)
            assert backend.session.step_count == 3
            await pilot.press("left_square_bracket", "n")
            backend.pump(2)
            assert backend.session.lr == 0.025 and backend.state.snapshot.lr == 0.025
            await pilot.press("right_square_bracket", "right_square_bracket", "n")
            backend.pump(2)
            assert backend.session.lr == 0.1 and backend.session.step_count == 5
            assert list(backend.state.history["loss"][-3:]) == list(backend.session.history.series("loss")[-3:])
    run(body())


def test_torch_attention_inspector_shows_the_softmax_far_below_a_quarter():
    """"open `block.softmax()` in the inspector: its mean p(1 − p) is far below the 1/4 it can reach\""""
    backend = local("torch_attention.py", steps=50)

    async def body():
        app = DebuggerApp(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_inspector_on(app, pilot, "block.softmax()")
            mean = next(layer for layer in backend.state.snapshot.layers
                        if layer.name == "block.softmax()").mean_local_derivative
            assert mean < 0.25 / 3
            row_text = next(line for line in plain(screen.query_one("#chain")).splitlines()
                            if line.startswith("block.softmax()"))
            shown = float(re.search(r"mean ([0-9.e-]+)", row_text).group(1))
            assert shown < 0.25 / 3 and shown == pytest.approx(mean, rel=0.05)
    run(body())
