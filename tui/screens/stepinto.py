"""s : step into one training iteration and walk through it op by op.

Forward ops first (what the model and the loss computed), then backward ops (the chain rule,
applied from the loss back to the weights). For each op: its formula, the statistics of what it
produced going forward, and going backward the upstream gradient dL/d(out), the local factor
d(out)/d(input) and the gradient it passes on, for each input, with the rule that links them.

The app sends the step-into command and pushes this screen; the recorded iteration arrives a
moment later in `DebugState.trace`. Once the run has stopped (a NaN, an error, the end) no new
iteration can be recorded, so the screen shows the last recorded one instead, e.g. the failing
step of a run that stopped on a non-finite value.
"""
from __future__ import annotations

import math
import re

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ..format import num

WIDE = 120          # from this many columns the op list sits beside the detail, not above it
TALL = 30           # from this many lines the op list above the detail gets more rows
DONE = ("finished", "stopped")
BAD_STYLE = "bold red"
FORWARD_STYLE = "green"
BACKWARD_STYLE = "magenta"


def _primitives() -> dict:
    """op name -> (elementwise?, infix symbol), from the engine's own derivative table."""
    try:
        from calcml.ops import PRIMITIVES
    except ImportError:  # pragma: no cover - the engine is always there in practice
        return {}
    return {op.name: (op.elementwise, op.symbol) for op in PRIMITIVES}


PRIMITIVES = _primitives()


# -- text for one op --------------------------------------------------------------------------

def shape_text(shape) -> str:
    shape = tuple(shape)
    return "scalar" if not shape else "×".join(str(n) for n in shape)


def _size(shape) -> int:
    return math.prod(shape) if shape else 1


def where_text(op) -> str:
    """Which part of the model ran the op, in words."""
    if op.scope:
        return f"layer {op.scope} ({op.module_type})" if op.module_type else f"layer {op.scope}"
    if op.module_type:
        return f"the model ({op.module_type})"
    return "the loss function"


def layer_cell(op) -> str:
    if op.scope:
        return f"{op.scope} {op.module_type or ''}".rstrip()
    return op.module_type or "loss"


def out_label(op) -> str:
    return f"%{op.id}"


def expression(op) -> str:
    """What a forward op computed, e.g. '%4 = %3 + 0.bias' or '%6 = tanh(%5)'."""
    _, symbol = PRIMITIVES.get(op.op, (False, ""))
    if op.op == "linear" and len(op.inputs) in (2, 3):
        rhs = f"{op.inputs[0]} @ {op.inputs[1]}ᵀ" + (f" + {op.inputs[2]}" if len(op.inputs) == 3 else "")
    elif symbol and len(op.inputs) == 2:
        rhs = f"{op.inputs[0]} {symbol} {op.inputs[1]}"
    else:
        rhs = f"{op.op}({', '.join(op.inputs)})"
    return f"{out_label(op)} = {rhs}"


def _rhs(formula: str) -> str:
    return formula.split(" = ", 1)[1] if " = " in formula else formula


def _substitute(text: str, inputs: tuple) -> str:
    """Put the input labels in place of the formula's variable names (a, b or x, z)."""
    names = ("a", "b") if len(inputs) == 2 else ("x", "z") if len(inputs) == 1 else ()
    mapping = {}
    for i, name in enumerate(names):
        mapping[name] = inputs[min(i, len(inputs) - 1)]
    if not mapping:
        return text
    return re.sub(r"\b(" + "|".join(mapping) + r")\b", lambda m: mapping[m.group(1)], text)


def _paren(text: str) -> str:
    return text if re.fullmatch(r"[\w%.]+", text) else f"({text})"


def chain_rule(op) -> tuple:
    """(the rule in words, one line per input: the gradient it receives, written out)."""
    up = f"dL/d{out_label(op)}"
    elementwise, _ = PRIMITIVES.get(op.op, (False, ""))
    up_shape = op.upstream.shape if op.upstream is not None else None
    lines = []
    for i, label in enumerate(op.inputs):
        grad = op.grads[i] if i < len(op.grads) else None
        g = f"dL/d{label}"
        if grad is None:
            lines.append(f"{label}: no gradient needed (it does not depend on any weight)")
            continue
        if elementwise:
            formula = op.formulas[i] if i < len(op.formulas) else ""
            line = f"{g} = {up} × {_paren(_substitute(_rhs(formula), op.inputs))}"
        elif op.op == "matmul":
            other = op.inputs[1 - i] if len(op.inputs) == 2 else "W"
            line = f"{g} = {up} @ {other}ᵀ" if i == 0 else f"{g} = {other}ᵀ @ {up}"
        elif op.op == "linear":      # out = x Wᵀ + b
            x, w = op.inputs[0], op.inputs[1] if len(op.inputs) > 1 else "W"
            line = (f"{g} = {up} @ {w}" if i == 0 else f"{g} = ({up})ᵀ @ {x}" if i == 1
                    else f"{g} = {up} summed over the batch")
        elif op.op == "sum":
            line = f"{g} = {up}, copied to every summed element"
        elif op.op == "mean":
            n = _size(grad.shape) // max(_size(up_shape), 1) if up_shape is not None else None
            line = f"{g} = {up} ÷ {n if n else 'n'}, copied to every averaged element"
        elif op.op == "max":
            line = f"{g} = {up} × mask (1 at the maximum, split between ties; 0 elsewhere)"
        elif op.op == "reshape":
            line = f"{g} = {up} reshaped back to {shape_text(grad.shape)}"
        elif op.op == "transpose":
            line = f"{g} = {up} transposed back ({shape_text(up_shape or ())} → {shape_text(grad.shape)})"
        elif op.op == "broadcast_to":
            line = f"{g} = {up} summed over the copies"
        elif op.op == "getitem":
            line = f"{g} = {up} put back at the picked elements, 0 elsewhere"
        elif op.op == "scatter_add":
            line = f"{g} = {up} gathered from the same places"
        else:
            line = f"{g} = vector-Jacobian product of {up} (see the formula)"
        if elementwise and up_shape is not None and tuple(grad.shape) != tuple(up_shape):
            line += f", summed over the broadcast axes to shape {shape_text(grad.shape)}"
        lines.append(line)
    if elementwise:
        rule = "gradient passed on = upstream × local factor (entry by entry)"
    elif op.op == "matmul":
        rule = "gradient passed on = upstream @ Wᵀ (to x), xᵀ @ upstream (to W)"
    elif op.op == "linear":
        rule = "gradient passed on = upstream @ W, upstreamᵀ @ x, Σ upstream"
    else:
        rule = "gradient passed on = the upstream gradient routed back through the op"
    return rule, lines


def stats_table(rows) -> Table:
    """rows: (label, ArrayStats). One line of statistics per array."""
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, padding=(0, 1),
                  collapse_padding=True, expand=False, show_edge=False)
    table.add_column("", overflow="fold", min_width=8)
    for name in ("shape", "mean", "std", "min", "max", "zeros", "NaN/Inf"):
        table.add_column(name, justify="right", no_wrap=True)
    for label, stats in rows:
        if stats is None:
            continue
        bad = Text(str(stats.non_finite), style=BAD_STYLE if stats.non_finite else "")
        table.add_row(label, shape_text(stats.shape), num(stats.mean), num(stats.std), num(stats.min),
                      num(stats.max), str(stats.zeros), bad)
    return table


def heading(op) -> Text:
    """The detail panel's title: which op, which pass, where."""
    arrow = "→ forward" if op.phase == "forward" else "← backward"
    bad = " · ! NaN/Inf" if op.non_finite else ""
    return Text(f"{arrow} op #{op.index}: {op.op} in {where_text(op)}{bad}")


def pair_note(op, pair) -> str:
    if pair is None:
        return ""
    if op.phase == "forward":
        return f"m: its backward step is op #{pair.index}"
    return f"m: forward op #{pair.index} computed {expression(pair)}"


def _labelled(label: str, body, style: str = "") -> Text:
    text = Text()
    text.append(f"{label:<11}", style="bold")
    text.append(body if isinstance(body, Text) else Text(str(body), style=style))
    return text


def input_note(label: str, by_id: dict) -> str:
    source = by_id.get(label)
    if source is not None:
        return f"{label} (op #{source.index})"
    if label.startswith("%"):
        return f"{label} (data or a constant)"
    return f"{label} (parameter)"


def forward_detail(op, by_id: dict) -> Group:
    parts = [_labelled("computes", expression(op)),
             _labelled("inputs", ", ".join(input_note(label, by_id) for label in op.inputs))]
    for k, formula in enumerate(op.formulas):
        parts.append(_labelled("derivative" if k == 0 else "", formula, "cyan"))
    rows = [(f"output {out_label(op)}", op.value)]
    rows += [(f"input {label}", by_id[label].value) for label in op.inputs if label in by_id]
    parts.append(stats_table(rows))
    return Group(*parts)


def _unit(stats) -> bool:
    """A scalar factor of exactly 1 or -1 (add, sub, neg, a bias)."""
    return tuple(stats.shape) == () and stats.min == stats.max and abs(stats.min) == 1


def backward_detail(op) -> Group:
    parts = []
    for k, formula in enumerate(op.formulas):
        parts.append(_labelled("formula" if k == 0 else "", formula, "cyan"))
    rule, lines = chain_rule(op)
    for k, line in enumerate(lines):
        parts.append(_labelled("chain rule" if k == 0 else "", line))
    parts.append(_labelled("", rule, "dim"))
    rows = [(f"upstream dL/d{out_label(op)}", op.upstream)]
    for i, label in enumerate(op.inputs):
        factor = op.factors[i] if i < len(op.factors) else None
        grad = op.grads[i] if i < len(op.grads) else None
        if factor is not None and not _unit(factor):   # a constant ±1 is in the chain rule line already
            rows.append((f"factor d{out_label(op)}/d{label}", factor))
        if grad is not None:
            rows.append((f"passed on dL/d{label}", grad))
    parts.append(stats_table(rows))
    return Group(*parts)


# -- the screen ---------------------------------------------------------------------------------

class StepIntoScreen(Screen):
    """One training iteration, op by op. `since`: the trace version before the step-into was sent
    (read from the state when the screen is made, if not given)."""

    BINDINGS = [
        Binding("escape", "close", "back"),
        Binding("q", "close", "back", show=False),
        Binding("n,j,down", "move(1)", "next op", priority=True),
        Binding("p,k,up", "move(-1)", "previous op", priority=True),
        Binding("home", "go_first", "first", priority=True),
        Binding("end", "go_last", "last", priority=True),
        Binding("f", "first_non_finite", "first NaN/Inf"),
        Binding("m", "pair", "forward↔backward"),
        Binding("s", "record_again", "record again"),
        Binding("pagedown", "scroll_detail(1)", show=False, priority=True),
        Binding("pageup", "scroll_detail(-1)", show=False, priority=True),
    ]
    DEFAULT_CSS = """
    StepIntoScreen { layout: vertical; }
    StepIntoScreen #si-head { height: 1; background: $panel; text-wrap: nowrap; text-overflow: ellipsis; }
    StepIntoScreen #si-body { height: 1fr; layout: vertical; }
    StepIntoScreen #si-ops { height: 1fr; min-height: 6; max-height: 16; border: round $accent;
                             border-title-color: $text; }
    StepIntoScreen #si-detail { height: 3fr; border: round $accent; padding: 0 1; border-title-color: $text;
                                border-subtitle-color: $text-muted; }
    StepIntoScreen #si-keys { height: 1; background: $panel; color: $text-muted;
                              text-wrap: nowrap; text-overflow: ellipsis; }
    StepIntoScreen.-tall #si-ops { height: 2fr; }
    StepIntoScreen.-wide #si-body { layout: horizontal; }
    StepIntoScreen.-wide #si-ops { height: 1fr; max-height: 100%; width: 46; }
    StepIntoScreen.-wide #si-detail { height: 1fr; width: 1fr; }
    """

    KEYS = "n/↓ next  p/↑ prev  f first NaN/Inf  m fwd↔bwd  s record again  esc back"
    KEYS_WIDE = ("n/↓ next  p/↑ prev  home/end first/last  f first NaN/Inf  m forward↔backward  "
                 "s record another iteration  pgup/pgdn scroll the detail  esc back")

    def __init__(self, since: int | None = None):
        super().__init__()
        self.since = since
        self.trace = None             # the TraceSummary shown
        self.trace_step = None        # the training step it recorded, when known
        self.selected = 0
        self.waiting = True
        self.message = ""             # the last thing a key had to say (e.g. no NaN/Inf)
        self.mode = "recording"       # 'recording', 'shown', 'stopped' (nothing recorded)
        self._by_id: dict = {}
        self._pairs: dict = {}
        self._ready = False
        if since is None:
            try:
                self.since = self.app.backend.state.versions["trace"]
            except Exception:  # made outside a running app: read it on mount
                self.since = None

    # -- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="si-head")
        with Horizontal(id="si-body"):
            table = DataTable(id="si-ops", cursor_type="row", zebra_stripes=False)
            table.border_title = "ops: forward → then backward ←"
            yield table
            detail = VerticalScroll(id="si-detail")
            detail.can_focus = False
            detail.border_title = "op"
            with detail:
                yield Static(id="si-text")
        yield Static(self.KEYS, id="si-keys")

    def on_mount(self) -> None:
        table = self.query_one("#si-ops", DataTable)
        for key, label in (("i", "#"), ("dir", " "), ("op", "op"), ("layer", "layer"), ("shape", "shape"),
                           ("bad", "!")):
            table.add_column(label, key=key)
        self._apply_width(self.app.size.width)
        state = self.app.backend.state
        if self.since is None:
            self.since = state.versions["trace"]
        self._ready = True
        if state.versions["trace"] != self.since and state.trace is not None:
            self._show_trace(state.trace, state.snapshot.step if state.snapshot else None, state)
        elif state.state in DONE:
            # The session ignores step-into once done: show what was recorded last, if anything.
            self._show_last(state)
        else:
            self._show_waiting(state)
        table.focus()

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width, event.size.height)

    def _apply_width(self, width: int, height: int | None = None) -> None:
        self.set_class(width >= WIDE, "-wide")
        self.set_class((height or self.app.size.height) >= TALL, "-tall")
        self.query_one("#si-keys", Static).update(self.KEYS_WIDE if width >= WIDE else self.KEYS)

    # -- following the state ---------------------------------------------------------------------
    def refresh_state(self, state, changed) -> None:
        if not self._ready:
            return  # on_mount looks at the state itself
        if self.waiting and state.versions["trace"] != self.since and state.trace is not None:
            snap = state.snapshot
            self._show_trace(state.trace, snap.step if snap is not None else None, state)
        elif self.waiting and state.state in DONE:
            self._show_last(state)
        elif "state" in changed:
            self._show_head(state)

    def _show_waiting(self, state) -> None:
        self.waiting, self.mode = True, "recording"
        snap = state.snapshot
        step = (snap.step + 1) if snap is not None else None
        self._set_rows(())
        text = Text()
        text.append("recording one iteration…", style="bold")
        if step is not None:
            text.append(f" (training step {step})")
        text.append("\n\nThe forward pass computes the loss op by op; the backward pass then applies the "
                    "chain rule op by op, from the loss back to every weight.", style="dim")
        self.query_one("#si-text", Static).update(text)
        detail = self.query_one("#si-detail")
        detail.border_title, detail.border_subtitle = "waiting", ""
        self._show_head(state)

    def _show_last(self, state) -> None:
        """The run is over: show the last recorded iteration, or say there is none."""
        self.waiting = False
        if state.trace is None:
            self.mode = "stopped"
            self._set_rows(())
            stop = state.stop or {}
            text = Text()
            text.append(f"No iteration was recorded: the run has {state.state}", style="bold")
            if stop.get("reason"):
                text.append(f" ({stop['reason']})")
            text.append(".\n\n")
            if stop.get("detail"):
                text.append(stop["detail"], style="dim")
            self.query_one("#si-text", Static).update(text)
            detail = self.query_one("#si-detail")
            detail.border_title, detail.border_subtitle = "nothing recorded", ""
            self._show_head(state)
            return
        stop = state.stop or {}
        step = getattr(state, "trace_step", None)
        if step is None and stop.get("reason") == "non_finite":
            step = stop.get("step")  # the failing step is recorded when the run stops on a NaN/Inf
        self._show_trace(state.trace, step, state)

    def _show_trace(self, trace, step, state) -> None:
        self.waiting, self.mode = False, "shown"
        self.trace, self.trace_step = trace, step
        self.since = state.versions["trace"]
        ops = trace.ops
        self._by_id = {out_label(o): o for o in ops if o.phase == "forward"}
        backward = {o.id: o for o in ops if o.phase == "backward"}
        self._pairs = {}
        for o in ops:
            if o.phase == "forward" and o.id in backward:
                self._pairs[o.index] = backward[o.id]
                self._pairs[backward[o.id].index] = o
        self._set_rows(ops)
        self.selected = 0
        self.select(0)

    def _set_rows(self, ops) -> None:
        table = self.query_one("#si-ops", DataTable)
        table.clear()
        for o in ops:
            forward = o.phase == "forward"
            arrow = Text("→", style=FORWARD_STYLE) if forward else Text("←", style=BACKWARD_STYLE)
            stats = o.value if forward else o.upstream
            bad = Text("!", style=BAD_STYLE) if o.non_finite else Text("")
            table.add_row(Text(str(o.index), justify="right"), arrow, o.op, layer_cell(o),
                          shape_text(stats.shape) if stats is not None else "", bad, key=str(o.index))

    def _show_head(self, state) -> None:
        text = Text()
        text.append(" STEP INTO ", style="bold reverse")
        if self.mode == "recording":
            text.append("  recording one iteration…")
        elif self.mode == "stopped":
            text.append(f"  the run has {state.state}: nothing to show")
        elif self.trace is not None:
            ops = self.trace.ops
            stop = state.stop or {}
            if self.trace_step is not None:
                text.append(f"  step {self.trace_step}")
            if state.state in DONE:
                here = self.trace_step is not None and stop.get("step") == self.trace_step
                why = f": {stop['reason']}" if stop.get("reason") else ""
                text.append(f"  (the run {state.state} here{why})" if here else
                            f"  (last recorded; the run has {state.state}{why})", style="yellow")
            first = self.trace.first_non_finite()
            if first is None:
                text.append("  no NaN/Inf", style="dim")
            else:
                text.append(f"  first NaN/Inf: op #{first}", style=BAD_STYLE)
            n_fwd = sum(1 for o in ops if o.phase == "forward")
            text.append(f"  {len(ops)} ops: {n_fwd} forward →, {len(ops) - n_fwd} backward ←")
        self.query_one("#si-head", Static).update(text)

    # -- the selected op ----------------------------------------------------------------------------
    @property
    def op_count(self) -> int:
        return len(self.trace.ops) if self.trace is not None else 0

    @property
    def selected_op(self):
        return self.trace.ops[self.selected] if self.op_count else None

    def select(self, index: int) -> None:
        if not self.op_count:
            return
        self.selected = max(0, min(index, self.op_count - 1))
        table = self.query_one("#si-ops", DataTable)
        if table.cursor_row != self.selected:
            table.move_cursor(row=self.selected, animate=False)
        self._show_detail()

    def _show_detail(self) -> None:
        op = self.selected_op
        if op is None:
            return
        body = forward_detail(op, self._by_id) if op.phase == "forward" else backward_detail(op)
        self.query_one("#si-text", Static).update(body)
        detail = self.query_one("#si-detail")
        detail.border_title = heading(op)
        detail.border_subtitle = Text(pair_note(op, self._pairs.get(op.index)))
        detail.scroll_home(animate=False)
        self._show_head(self.app.backend.state)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """A click on a row (keys move the selection themselves; older events are ignored)."""
        current = event.data_table.cursor_row
        if self.op_count and event.cursor_row == current and current != self.selected:
            self.select(current)

    # -- keys ------------------------------------------------------------------------------------------
    def action_close(self) -> None:
        self.dismiss()

    def action_move(self, delta: int) -> None:
        self.select(self.selected + delta)

    def action_go_first(self) -> None:
        self.select(0)

    def action_go_last(self) -> None:
        self.select(self.op_count - 1)

    def action_first_non_finite(self) -> None:
        if self.trace is None:
            return
        first = self.trace.first_non_finite()
        if first is None:
            self.message = "no NaN or Inf anywhere in this iteration"
            self.notify(self.message, timeout=3)
            return
        self.message = f"op #{first} is the first with a NaN or Inf"
        self.select(first)

    def action_pair(self) -> None:
        pair = self._pairs.get(self.selected)
        if pair is not None:
            self.select(pair.index)
        elif self.selected_op is not None:
            self.message = f"op #{self.selected} has no {'backward' if self.selected_op.phase == 'forward' else 'forward'} partner"
            self.notify(self.message, timeout=3)

    def action_record_again(self) -> None:
        """Record the next iteration (the run must be paused)."""
        state = self.app.backend.state
        if state.state != "paused":
            self.message = (f"the run has {state.state}: no new iteration can be recorded" if state.state in DONE
                            else "pause the run first (space) to record an iteration")
            self.notify(self.message, timeout=3)
            return
        self.since = state.versions["trace"]
        self.trace = None
        self.app.backend.step_into()
        self._show_waiting(state)

    def action_scroll_detail(self, direction: int) -> None:
        detail = self.query_one("#si-detail", VerticalScroll)
        if direction > 0:
            detail.scroll_page_down(animate=False)
        else:
            detail.scroll_page_up(animate=False)
