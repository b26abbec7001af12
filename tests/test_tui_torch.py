"""The interface on a PyTorch model, as a person uses it (Textual's Pilot): the layer table, the
inspector's chain-rule panel, and step-into, the same screens as for the engine's models."""
from __future__ import annotations

import asyncio
import math

import pytest

pytest.importorskip("torch")

from calcml.tui.app import DebuggerApp as App                           # noqa: E402
from calcml.tui.screens.stepinto import StepIntoScreen                   # noqa: E402
from test_tui_inspector import backend_for, expected_chain, open_inspector, open_inspector_on, plain  # noqa: E402
from test_tui_stepinto import view_text                                  # noqa: E402
from tui_helpers import settle                                           # noqa: E402


def test_the_inspector_on_a_torch_residual_net_multiplies_its_factors():
    backend = backend_for("torch_residual", steps=4)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_inspector(app, pilot, row=1)
            layers = backend.state.snapshot.layers
            assert screen.layer_name == "blocks.0.fc1" == layers[1].name
            got = [link.product for link in screen.links]
            assert got == pytest.approx(expected_chain(layers, "blocks.0.fc1"), rel=1e-12)
            assert math.isclose(screen.links[-2].product, layers[1].grad_out_norm, rel_tol=1e-9)
            table = plain(screen.query_one("#chain").content)
            assert "Wᵀ" in table and "ReLU" in table
            # each block's fc1 is a fork (the shortcut reads its input too): its share, then the join
            joins = [link.layer for link in screen.links if link.type == "join"]
            assert joins == [f"blocks.{b}.fc1" for b in range(7, 0, -1)] and "+ other paths" in table
            await pilot.press("escape")

    asyncio.run(scenario())


def test_step_into_on_a_torch_model_shows_its_ops():
    backend = backend_for("torch_residual", steps=1)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()
            await pilot.press("s")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, StepIntoScreen) and screen.waiting
            backend.pump(1)
            app.poll()
            await settle(pilot, lambda: not screen.waiting)
            trace = backend.state.trace
            assert [op.op for op in trace.ops[:3]] == ["linear", "linear", "relu"]
            assert trace.ops[-1].phase == "backward" and trace.ops[-1].op == "linear"
            assert screen.query_one("#si-ops").row_count == len(trace.ops)
            text = view_text(screen)
            assert "→ forward op #0" in text and "linear in layer inp (Linear)" in text
            assert "x0 (data or a constant)" in text and "inp.weight (parameter)" in text

    asyncio.run(scenario())


def test_the_inspector_on_an_attention_softmax_measured_beside_its_fused_function():
    """nn.TransformerEncoderLayer's attention: its softmax is a row of the layer table (type
    attention, with its f' and saturated share), and the inspector opened on it says why it has
    no gradient of its own."""
    from calcml.debug import Session
    from calcml.tui.backend import LocalBackend
    from helpers import make_spec
    from test_torch_attention_sites import Encoder, X, Y
    import torch
    torch.manual_seed(0)
    model = Encoder()
    spec = make_spec(model, torch.nn.functional.mse_loss, (X, Y),
                     optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    backend = LocalBackend(Session(spec))
    backend.step(3)
    backend.pump(3)

    async def scenario():
        app = App(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_inspector_on(app, pilot, "block.self_attn.softmax()")
            title = plain(screen.query_one("#insp-title").content)
            assert "attention" in title
            summary = plain(screen.query_one("#chain-summary").content)
            assert "computed again beside it" in summary
            await pilot.press("escape")

    asyncio.run(scenario())
