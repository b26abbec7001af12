"""s : step into one training iteration and walk through it op by op.

Forward ops first (what the model and the loss computed), then backward ops (the chain rule,
applied from the loss back to the weights). The list numbers the ops #0, #1, ... and names each
op's layer and, for an op of a library loss, its part of the formula (cut at the list's edge; the
detail has it whole); the values ops make are t0, t1, ... For each op: its formula, the statistics of what it
produced going forward, and going backward the upstream gradient dL/d(out), the local factor
d(out)/d(input) and the gradient it passes on, for each input, with the rule that links them.

The app sends the step-into command and pushes this screen; the recorded iteration arrives a
moment later in `DebugState.trace`. Once the run has stopped (a NaN, an error, the end) no new
iteration can be recorded, so the screen shows the last recorded one instead, e.g. the failing
step of a run that stopped on a non-finite value.
"""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ..messages import StateChanged
from ..text_stepinto import (BACKWARD_STYLE, BAD_STYLE, DONE, FORWARD_STYLE, backward_detail, forward_detail,
                             head_text, heading, layer_cell, nothing_recorded_text, out_label, pair_note, shape_text,
                             waiting_text)

WIDE = 120          # from this many columns the op list sits beside the detail, not above it


# -- the screen ---------------------------------------------------------------------------------

class StepIntoScreen(Screen):
    """One training iteration, op by op. `since`: the trace version before the step-into was sent
    (read from the state when the screen is made, if not given)."""

    BINDINGS = [
        Binding("escape", "close", "back"),
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
    StepIntoScreen #si-ops { height: 1fr; min-height: 6; border: round $accent;
                             border-title-color: $text; overflow-x: hidden; }
    StepIntoScreen #si-detail { height: auto; max-height: 70%; border: round $accent; padding: 0 1;
                                border-title-color: $text; border-subtitle-color: $text-muted; }
    StepIntoScreen #si-keys { height: 1; background: $panel; color: $text-muted;
                              text-wrap: nowrap; text-overflow: ellipsis; }
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
        # ops are #0, #1, ...; the values they make t0, t1, ... (the detail's names)
        for key, label in (("i", "op #"), ("dir", " "), ("op", "op"), ("shape", "shape"), ("bad", "!"),
                           ("layer", "layer: what it is")):
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
        self.query_one("#si-keys", Static).update(self.KEYS_WIDE if width >= WIDE else self.KEYS)

    # -- following the state ---------------------------------------------------------------------
    def on_state_changed(self, message: StateChanged) -> None:
        if not self._ready:
            return  # on_mount looks at the state itself
        state, changed = message.state, message.changed
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
        self.query_one("#si-text", Static).update(waiting_text(step))
        detail = self.query_one("#si-detail")
        detail.border_title, detail.border_subtitle = "waiting", ""
        self._show_head(state)

    def _show_last(self, state) -> None:
        """The run is over: show the last recorded iteration, or say there is none."""
        self.waiting = False
        if state.trace is None:
            self.mode = "stopped"
            self._set_rows(())
            self.query_one("#si-text", Static).update(nothing_recorded_text(state))
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
            table.add_row(Text(f"#{o.index}", justify="right"), arrow, o.op,
                          shape_text(stats.shape) if stats is not None else "", bad, layer_cell(o), key=str(o.index))

    def _show_head(self, state) -> None:
        self.query_one("#si-head", Static).update(head_text(self.mode, self.trace, self.trace_step, state))

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
