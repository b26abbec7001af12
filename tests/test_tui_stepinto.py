"""The step-into view, driven with Pilot: one iteration op by op, forward then backward."""
import re

import numpy as np


from calcml.debug import Session, load_model_file
from calcml.tui.app import DebuggerApp
from calcml.tui.backend import LocalBackend, ProcessBackend
from calcml.tui.format import num
from calcml.debug.tracesummary import ArrayStats, OpSummary
from calcml.tui.screens.stepinto import StepIntoScreen
from calcml.tui.text_stepinto import chain_rule, expression, shape_text
from tui_helpers import SAMPLES, local, plain, run, screen_text, settle


def view_text(screen) -> str:
    """The step-into view's words: header, list and detail titles, and the detail itself."""
    detail = screen.query_one("#si-detail")
    return "\n".join([plain(screen.query_one("#si-head")), str(detail.border_title), str(detail.border_subtitle),
                      plain(screen.query_one("#si-text"))])


def make_app(backend) -> DebuggerApp:
    return DebuggerApp(backend, clock=lambda: 0.0)


async def open_step_into(app, pilot, backend) -> StepIntoScreen:
    """Press s, let the training side record the iteration, and wait for the view to show it."""
    await pilot.press("s")
    screen = app.screen
    assert isinstance(screen, StepIntoScreen)
    backend.pump(1)
    app.poll()
    await settle(pilot, lambda: not screen.waiting, what="the view to show the recorded iteration")
    return screen


def op_index(trace, phase: str, op: str) -> int:
    return next(o.index for o in trace.ops if o.phase == phase and o.op == op)


# -- opening, waiting, the op list ------------------------------------------------------------

def test_s_opens_the_view_which_waits_for_the_trace_then_lists_every_op():
    backend = local("xor_mlp.py", steps=2)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("s")
            screen = app.screen
            assert isinstance(screen, StepIntoScreen)
            app.poll()
            await settle(pilot, lambda: screen.waiting)
            assert screen.waiting and screen.trace is None
            assert "recording one iteration" in screen_text(app)

            backend.pump(1)
            app.poll()
            await settle(pilot, lambda: not screen.waiting)
            trace = backend.state.trace
            assert trace is not None and not screen.waiting
            assert screen.trace is trace
            table = screen.query_one("#si-ops")
            assert table.row_count == len(trace.ops) == screen.op_count
            assert screen.selected == 0 and trace.ops[0].phase == "forward"
            text = view_text(screen)
            assert "recording one iteration" not in text
            assert "step 3" in text                      # the iteration recorded is training step 3
            n_fwd = sum(o.phase == "forward" for o in trace.ops)
            assert f"{len(trace.ops)} ops: {n_fwd} forward →, {len(trace.ops) - n_fwd} backward ←" in text
            assert "→ forward op #0" in text
    run(body())


def test_forward_ops_come_first_then_backward_with_arrows():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_step_into(app, pilot, backend)
            phases = [o.phase for o in screen.trace.ops]
            first_backward = phases.index("backward")
            assert set(phases[:first_backward]) == {"forward"} and set(phases[first_backward:]) == {"backward"}
            table = screen.query_one("#si-ops")
            assert str(table.get_row_at(0)[1]) == "→"
            assert str(table.get_row_at(first_backward)[1]) == "←"
            t = op_index(screen.trace, "forward", "tanh")
            assert str(table.get_row_at(t)[2]) == "tanh" and str(table.get_row_at(t)[5]) == "1 Tanh"
            assert str(table.get_row_at(t)[3]) == "200×8" and str(table.get_row_at(t)[0]) == f"#{t}"
    run(body())


def test_keys_move_through_the_ops():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_step_into(app, pilot, backend)
            table = screen.query_one("#si-ops")
            last = screen.op_count - 1
            for key, expected in (("n", 1), ("j", 2), ("down", 3), ("p", 2), ("k", 1), ("up", 0), ("up", 0),
                                  ("end", last), ("n", last), ("home", 0)):
                await pilot.press(key)
                assert screen.selected == expected, key
                assert table.cursor_row == expected, key
            assert app.backend.session.step_count == 2   # n moved the op cursor, it did not train a step
            await pilot.press(*["n"] * 7, "p", *["down"] * 5)    # quick presses land where they should
            await pilot.pause()
            assert screen.selected == table.cursor_row == 11
            await pilot.click("#si-ops", offset=(5, 3))          # a click selects the row under it
            await pilot.pause()
            assert screen.selected == table.cursor_row != 11
    run(body())


def test_escape_goes_back_to_the_main_screen():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_step_into(app, pilot, backend)
            await pilot.press("escape")
            assert not isinstance(app.screen, StepIntoScreen)
            assert app.screen.query_one("#layers") is not None
    run(body())


def test_side_by_side_when_wide_stacked_when_narrow():
    async def body(size):
        backend = local("xor_mlp.py", steps=1)
        app = make_app(backend)
        async with app.run_test(size=size) as pilot:
            screen = await open_step_into(app, pilot, backend)
            ops, detail = screen.query_one("#si-ops"), screen.query_one("#si-detail")
            return screen.has_class("-wide"), ops.region, detail.region, detail.max_scroll_y

    wide, ops, detail, _ = run(body((160, 48)))
    assert wide and ops.right <= detail.x and ops.y == detail.y
    narrow, ops, detail, hidden = run(body((80, 24)))
    assert not narrow and ops.bottom <= detail.y
    # stacked, the detail is as tall as what it says (all of it in sight, no empty rows) and the
    # op list has the rest: ten ops at 80x24
    assert hidden == 0 and ops.height >= 10 + 3       # (its border and header)


# -- the detail panel ----------------------------------------------------------------------------

def test_forward_detail_shows_formula_inputs_and_value_statistics():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_step_into(app, pilot, backend)
            trace = screen.trace
            i = op_index(trace, "forward", "tanh")
            for _ in range(i):
                await pilot.press("n")
            op = trace.ops[i]
            text = view_text(screen)
            assert "d tanh(z)/dz = 1 - tanh(z)^2" in text
            assert expression(op) in text and op.inputs[0] in text
            v = op.value
            row = re.search(r"output t\d+ +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+)", text)
            assert row.groups() == (shape_text(v.shape), num(v.mean), num(v.std), num(v.min), num(v.max),
                                    str(v.zeros), str(v.non_finite))
            # its input came from the add before it: its statistics are shown too
            source = next(o for o in trace.ops if f"t{o.id}" == op.inputs[0])
            assert f"{op.inputs[0]} (made by op #{source.index})" in text
            assert f"m: its backward step is op #{op_index(trace, 'backward', 'tanh')}" in text
    run(body())


def test_backward_detail_shows_upstream_factor_and_gradient_passed_on():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_step_into(app, pilot, backend)
            trace = screen.trace
            i = op_index(trace, "backward", "tanh")
            await pilot.press("end")
            while screen.selected > i:
                await pilot.press("p")
            op = trace.ops[i]
            assert screen.selected_op is op and op.phase == "backward"
            text = view_text(screen)
            assert "← backward op" in text and "d tanh(z)/dz = 1 - tanh(z)^2" in text
            assert "gradient passed on = upstream × local factor" in text
            x, out = op.inputs[0], f"t{op.id}"
            assert f"dL/d{x} = dL/d{out} × (1 - tanh({x})^2)" in text

            def row(label):
                m = re.search(re.escape(label) + r" +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+)", text)
                assert m, label
                return m.groups()

            def expect(stats):
                return (shape_text(stats.shape), num(stats.mean), num(stats.std), num(stats.min), num(stats.max),
                        str(stats.zeros), str(stats.non_finite))

            assert row(f"upstream dL/d{out}") == expect(op.upstream)
            assert row(f"factor d{out}/d{x}") == expect(op.factors[0])
            assert row(f"passed on dL/d{x}") == expect(op.grads[0])
    run(body())


def test_backward_layer_op_states_the_matrix_rule_and_pairs_with_its_forward_op():
    """A layer's weights enter through one op (a fused x Wᵀ + b, or a matmul): its rule is a matrix
    product, not an entry-by-entry one."""
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_step_into(app, pilot, backend)
            op = next(o for o in screen.trace.ops
                      if o.phase == "backward" and o.scope == "2" and o.op in ("linear", "matmul"))
            screen.select(op.index)
            await pilot.pause()
            x, w, out = op.inputs[0], op.inputs[1], f"t{op.id}"
            text = view_text(screen)
            if op.op == "linear":
                assert "gradient passed on = upstream @ W, upstreamᵀ @ x, Σ upstream" in text
                assert f"dL/d{x} = dL/d{out} @ {w}" in text
                assert f"dL/d{w} = (dL/d{out})ᵀ @ {x}" in text
                assert f"dL/d{op.inputs[2]} = dL/d{out} summed over the batch" in text
            else:
                assert "gradient passed on = upstream @ Wᵀ (to x), xᵀ @ upstream (to W)" in text
                assert f"dL/d{x} = dL/d{out} @ {w}ᵀ" in text
                assert f"dL/d{w} = {x}ᵀ @ dL/d{out}" in text
            assert f"passed on dL/d{w}" in text and f"factor d{out}/d{w}" in text
            assert "m: forward op #" in text            # its forward op, one key away
            await pilot.press("m")
            assert screen.selected_op.phase == "forward" and screen.selected_op.id == op.id
            await pilot.press("m")
            assert screen.selected == op.index
    run(body())


def _stats(shape, value=0.5, std=0.0):
    return ArrayStats(tuple(shape), value, std, value - std, value + std, 0, 0)


def _backward(op, inputs, formulas, upstream, factors, grads):
    return OpSummary(0, "backward", op, 9, "", None, tuple(inputs), tuple(formulas), upstream=upstream,
                     factors=tuple(factors), grads=tuple(grads))


def test_chain_rule_lines():
    up = _stats((200, 8))
    # an elementwise op: upstream × the formula's right-hand side, written with the input's label
    tanh = _backward("tanh", ["t5"], ["d tanh(z)/dz = 1 - tanh(z)^2"], up, [_stats((200, 8))], [_stats((200, 8))])
    rule, lines = chain_rule(tanh)
    assert rule == "gradient passed on = upstream × local factor (entry by entry)"
    assert lines == ["dL/dt5 = dL/dt9 × (1 - tanh(t5)^2)"]
    # a broadcast bias: the gradient is summed back to the bias's shape
    add = _backward("add", ["t3", "0.bias"], ["d(a+b)/da = 1", "d(a+b)/db = 1"], up,
                    [_stats((), 1.0), _stats((), 1.0)], [_stats((200, 8)), _stats((8,))])
    assert chain_rule(add)[1] == ["dL/dt3 = dL/dt9 × 1",
                                  "dL/d0.bias = dL/dt9 × 1, summed over the broadcast axes to shape 8"]
    # a product with the targets: the targets need no gradient; b in the formula is the other input
    mul = _backward("mul", ["t7", "t8"], ["d(a*b)/da = b", "d(a*b)/db = a"], up,
                    [None, _stats((200, 8))], [None, _stats((200, 8))])
    assert chain_rule(mul)[1] == ["t7: no gradient needed (it does not depend on any weight)",
                                  "dL/dt8 = dL/dt9 × t7"]
    mean = _backward("mean", ["t4"], ["d mean(x)/dx_i = 1/n"], _stats(()), [None], [_stats((200, 1))])
    assert chain_rule(mean)[1] == ["dL/dt4 = dL/dt9 ÷ 200, copied to every averaged element"]
    matmul = _backward("matmul", ["t6", "t8"], ["d(x@W)/dx = W^T", "d(x@W)/dW = x^T"], _stats((200, 1)),
                       [_stats((1, 8)), _stats((8, 200))], [_stats((200, 8)), _stats((8, 1))])
    rule, lines = chain_rule(matmul)
    assert rule == "gradient passed on = upstream @ Wᵀ (to x), xᵀ @ upstream (to W)"
    assert lines == ["dL/dt6 = dL/dt9 @ t8ᵀ", "dL/dt8 = t6ᵀ @ dL/dt9"]
    linear = _backward("linear", ["t4", "2.weight", "2.bias"], ["x", "W", "b"], _stats((200, 1)),
                       [_stats((1, 8)), _stats((200, 8)), _stats((), 1.0)],
                       [_stats((200, 8)), _stats((1, 8)), _stats((1,))])
    rule, lines = chain_rule(linear)
    assert rule == "gradient passed on = upstream @ W, upstreamᵀ @ x, Σ upstream"
    assert lines == ["dL/dt4 = dL/dt9 @ 2.weight", "dL/d2.weight = (dL/dt9)ᵀ @ t4",
                     "dL/d2.bias = dL/dt9 summed over the batch"]


# -- NaN and Inf ------------------------------------------------------------------------------------

def test_f_jumps_to_the_first_non_finite_op_of_the_failing_step():
    backend = local("nan_demo.py", steps=1)          # step 2 is the one that produces a NaN

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_step_into(app, pilot, backend)
            state = backend.state
            assert state.state == "stopped" and state.stop["reason"] == "non_finite" and state.stop["step"] == 2
            trace = screen.trace
            assert trace is state.trace
            first = trace.first_non_finite()
            assert first is not None and screen.selected == 0
            await pilot.press("f")
            assert screen.selected == first
            op = screen.selected_op
            assert op.phase == "forward" and op.op == "log" and op.value.non_finite > 0
            assert all(o.non_finite == 0 for o in trace.ops[:first])
            text = view_text(screen)
            assert f"first NaN/Inf: op #{first}" in text and "! NaN/Inf" in text
            assert "(the run stopped here: non_finite)" in text and "step 2" in text
            table = screen.query_one("#si-ops")
            assert str(table.get_row_at(first)[4]) == "!" and str(table.get_row_at(first - 1)[4]) == ""
            # its output's mean is over the finite entries only, and says so
            bad, size = op.value.non_finite, op.value.shape[0] * op.value.shape[1]
            assert f"{num(op.value.mean)}*" in text
            assert f"* output t{op.id}: mean, std, min and max of its {size - bad} finite entries only ({bad} of {size} are NaN/Inf)" in " ".join(text.split())
    run(body())


def test_once_stopped_the_view_shows_the_last_recorded_iteration():
    """A stopped session ignores step-into; the view still opens on the trace of the failing step."""
    backend = local("nan_demo.py")

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            backend.run()
            backend.pump(10)
            app.poll()
            await settle(pilot, lambda: backend.state.state == "stopped")
            state = backend.state
            assert state.state == "stopped" and state.stop["step"] == 2 and state.trace is not None
            app.push_screen(StepIntoScreen())             # the app's s is disabled once stopped
            app.poll()
            await settle(pilot, lambda: isinstance(app.screen, StepIntoScreen))
            screen = app.screen
            assert not screen.waiting and screen.trace is state.trace and screen.trace_step == 2
            await pilot.press("f")
            first = state.trace.first_non_finite()
            assert first is not None and screen.selected == first and screen.selected_op.op == "log"
            await pilot.press("s")                        # cannot record another: says so
            assert "no new iteration can be recorded" in screen.message and screen.trace is not None
    run(body())


def test_a_step_that_cannot_run_is_reported_instead_of_waiting_forever(tmp_path):
    model = tmp_path / "one_batch.py"
    model.write_text(
        "import numpy as np\nimport calcml as cm\n"
        "model = cm.nn.Linear(2, 1)\n"
        "def loss(p, y):\n    return ((p - y) ** 2).mean()\n"
        "data = iter([(np.ones((4, 2)), np.zeros((4, 1)))])\n")
    backend = LocalBackend(Session(load_model_file(str(model))))
    backend.step(1)
    backend.pump(1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_step_into(app, pilot, backend)   # the one batch is used up
            assert backend.state.state == "stopped" and backend.state.stop["reason"] == "data_exhausted"
            assert not screen.waiting and screen.trace is None and screen.mode == "stopped"
            text = view_text(screen)
            assert "No iteration was recorded: the run has stopped (data_exhausted)" in text
            assert "recording one iteration" not in text
            await pilot.press("n", "f", "m", "end")            # nothing to move through: no error
            await pilot.press("escape")
            assert not isinstance(app.screen, StepIntoScreen)
    run(body())


def test_f_says_so_when_there_is_no_nan():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_step_into(app, pilot, backend)
            await pilot.press("n", "n", "f")
            assert screen.selected == 2
            assert screen.message == "no NaN or Inf anywhere in this iteration"
            assert "no NaN/Inf" in view_text(screen)
    run(body())


def test_s_in_the_view_records_the_next_iteration():
    backend = local("xor_mlp.py", steps=1)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_step_into(app, pilot, backend)
            first = screen.trace
            assert screen.trace_step == 2
            await pilot.press("s")
            assert app.screen is screen and screen.waiting
            backend.pump(1)
            app.poll()
            await settle(pilot, lambda: not screen.waiting)
            assert not screen.waiting and screen.trace is not first and screen.trace_step == 3
            assert backend.session.step_count == 3
    run(body())


def test_with_a_training_process_the_trace_arrives_later_and_is_shown():
    backend = ProcessBackend(str(SAMPLES / "xor_mlp.py"), run=False)

    async def body():
        app = make_app(backend)
        async with app.run_test(size=(100, 32)) as pilot:
            await settle(pilot, lambda: backend.state.state == "paused", 20)
            await pilot.press("s")
            screen = app.screen
            assert isinstance(screen, StepIntoScreen)
            await settle(pilot, lambda: not screen.waiting, 20)   # the app's timer polls the state
            assert not screen.waiting and screen.trace is backend.state.trace
            assert screen.op_count == len(backend.state.trace.ops) > 0 and screen.trace_step == 1
            await pilot.press("end")
            assert screen.selected_op.phase == "backward"
            await pilot.press("escape", "q")
    run(body())
    assert backend.process.wait(5) == 0


# -- snapshots ---------------------------------------------------------------------------------------

def _step_into_at(op_phase: str, scope: str):
    async def run_before(pilot):
        screen = await open_step_into(pilot.app, pilot, pilot.app.backend)
        screen.select(next(o.index for o in screen.trace.ops if o.phase == op_phase and o.scope == scope))
        await pilot.pause()
    return run_before


def test_snapshot_forward_op(snap_compare):
    app = make_app(local("xor_mlp.py", steps=3))
    assert snap_compare(app, terminal_size=(100, 32), run_before=_step_into_at("forward", "1"))     # the tanh


def test_snapshot_backward_op(snap_compare):
    app = make_app(local("xor_mlp.py", steps=3))
    assert snap_compare(app, terminal_size=(100, 32), run_before=_step_into_at("backward", "2"))   # the output layer


def test_snapshot_first_non_finite_80x24(snap_compare):
    async def run_before(pilot):
        await open_step_into(pilot.app, pilot, pilot.app.backend)
        await pilot.press("f")

    app = make_app(local("nan_demo.py", steps=1))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def _at_the_loss(pilot):
    """Step into, then to the last forward op: the loss's own (its formula named)."""
    async def run_before(pilot):
        screen = await open_step_into(pilot.app, pilot, pilot.app.backend)
        screen.select(max(o.index for o in screen.trace.ops if o.phase == "forward"))
        await pilot.pause()
    return run_before(pilot)


def test_snapshot_loss_op_named_after_its_formula_160x48(snap_compare):
    app = make_app(local("xor_mlp.py", steps=3))
    assert snap_compare(app, terminal_size=(160, 48), run_before=_at_the_loss)


def test_snapshot_loss_op_named_after_its_formula_80x24(snap_compare):
    app = make_app(local("xor_mlp.py", steps=3))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_at_the_loss)


# -- names: values are t<id>, ops #<n>; a library loss's ops show its formula ----------------------

def test_values_are_named_t_and_ops_hash_so_one_is_never_read_as_the_other():
    backend = local("xor_mlp.py", steps=1)
    backend.step_into()
    backend.pump(1)
    trace = backend.state.trace
    forward = [o for o in trace.ops if o.phase == "forward"]
    assert all(re.fullmatch(r"t\d+|[\w.]+\.(weight|bias)", label) for o in forward for label in o.inputs)
    assert not any("%" in label for o in trace.ops for label in o.inputs)
    tanh = next(o for o in forward if o.op == "tanh")
    assert expression(tanh) == f"t{tanh.id} = tanh({tanh.inputs[0]})"


def test_a_library_losss_ops_are_named_after_its_formula():
    """mse_loss: 'ŷ − y', '(ŷ − y)²', 'MSE = mean of (ŷ − y)²'; BCE with logits and cross-entropy
    likewise, through the composites they are built from; the list's last column shows them."""
    import calcml as cm
    import calcml.nn.functional as F
    from calcml.debug.tracesummary import summarise_trace
    from calcml.tui.text_stepinto import forward_detail, heading, layer_cell

    pred = cm.Tensor(np.array([[0.5], [2.0]]), requires_grad=True)
    cases = {
        "mse": (lambda: F.mse_loss(pred, np.array([[1.0], [1.0]])),
                ["ŷ − y", "(ŷ − y)²", "MSE = mean of (ŷ − y)²"]),
        "bce_logits": (lambda: F.binary_cross_entropy_with_logits(pred, np.array([[1.0], [0.0]])),
                       ["|z|", "z + |z|", "max(z, 0) = (z + |z|)/2", "−|z|", "e^−|z|", "log(1 + e^−|z|)",
                        "softplus(z) = max(z, 0) + log(1 + e^−|z|)", "y·z", "softplus(z) − y·z",
                        "BCE = mean of softplus(z) − y·z"]),
        "ce": (lambda: F.cross_entropy(cm.Tensor(np.array([[0.5, 1.0], [2.0, 0.0]]), requires_grad=True),
                                       np.array([1, 0])),
               ["z − max z", "e^(z − max z)", "Σ e^(z − max z)", "log Σ e^(z − max z)", "log softmax(z)",
                "y·log p (y one-hot)", "Σ y·log p", "CE = −(1/n) Σ y·log p"]),
    }
    for key, (loss_fn, names) in cases.items():
        with cm.trace() as t:
            loss_fn().backward()
        summary = summarise_trace(t)
        forward = [o for o in summary.ops if o.phase == "forward"]
        assert [o.name for o in forward if o.name] == names, key
        last = forward[-1]
        assert layer_cell(last) == f"loss: {names[-1]}"
        assert f"({names[-1]})" in heading(last).plain
        assert f"that is    {names[-1]}\n" in plain_group(forward_detail(last, {}))
        backward = [o for o in summary.ops if o.phase == "backward"]
        assert {o.name for o in backward if o.name} <= set(names) and any(o.name for o in backward)
    with cm.trace() as t:   # an op a user's own loss runs stays as it was
        ((pred - 1.0) * (pred - 1.0)).mean().backward()
    assert not any(o.name for o in summarise_trace(t).ops)


def plain_group(group) -> str:
    import io
    from rich.console import Console
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(group)
    return console.export_text()


def test_statistics_of_an_array_with_nan_say_they_are_of_its_finite_entries():
    from calcml.tui.text_stepinto import finite_notes, stats_table
    partial = ArrayStats((2, 2), 1.5, 0.5, 1.0, 2.0, 0, 2)
    every = ArrayStats((3,), float("nan"), float("nan"), float("nan"), float("nan"), 0, 3)
    clean = ArrayStats((2,), 1.0, 0.0, 1.0, 1.0, 0, 0)
    rows = [("output t4", partial), ("input t3", clean), ("input t2", every)]
    notes = [n.plain for n in finite_notes(rows)]
    assert notes == ["* output t4: mean, std, min and max of its 2 finite entries only (2 of 4 are NaN/Inf)",
                     "input t2: every entry is NaN/Inf, so it has no mean, std, min or max"]
    table = plain_group(stats_table(rows))
    assert "1.5*" in table and "0.5*" in table and "1*" not in table.split("input t3")[1].split("\n")[0]
