"""b : the breakpoints: list them, add one, remove one.

A breakpoint pauses training when a warning starts, at a step, every N steps, or when a
condition on the step's statistics holds. The training side checks what is typed and is the
only judge: a refused breakpoint comes back with the reason, shown here in red, and the text
stays in the box to be corrected.
"""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from ..messages import StateChanged
from ..text_breakpoints import HINT, names_text, placeholder, short_reason

TALL = 30   # from this many lines the dialog also lists the names a breakpoint can use


class BreakpointsScreen(ModalScreen):
    BINDINGS = [
        Binding("escape", "close", "close"),
        Binding("d,delete", "remove", "remove", show=False),
    ]
    DEFAULT_CSS = """
    BreakpointsScreen { align: center middle; }
    BreakpointsScreen > Vertical { width: 96; max-width: 100%; height: auto; max-height: 100%;
                                   border: round $accent; background: $surface; padding: 0 1; }
    BreakpointsScreen #bp-table { height: auto; max-height: 10; }
    BreakpointsScreen #bp-empty { color: $text-muted; }
    BreakpointsScreen #bp-names { margin-top: 1; }
    BreakpointsScreen #bp-error { color: $error; }
    BreakpointsScreen #bp-keys { color: $text-muted; margin-top: 1; }
    """

    def __init__(self):
        super().__init__()
        self.pending: str | None = None        # text sent to the training side, not yet answered
        self._pending_since = None              # versions['breakpoints'] when it was sent
        self.error: str | None = None           # the reason the last add was refused
        self.items: list = []
        self._ready = False

    def compose(self) -> ComposeResult:
        state = self.app.backend.state
        with Vertical() as box:
            box.border_title = "Breakpoints: pause when…"
            yield DataTable(id="bp-table", cursor_type="row", zebra_stripes=False)
            yield Static("no breakpoints yet", id="bp-empty")
            yield Input(placeholder=placeholder(state), id="bp-input")
            yield Static("", id="bp-error")
            yield Static(HINT, id="bp-hint")
            yield Static(names_text(state), id="bp-names")
            yield Static("enter add · tab to the list, then d or delete removes · esc close", id="bp-keys")

    def on_mount(self) -> None:
        table = self.query_one("#bp-table", DataTable)
        table.add_column("id", key="id")
        table.add_column("pauses", key="describe")
        table.add_column("", key="hit")
        self.query_one("#bp-error", Static).display = False
        self._apply_height(self.app.size.height)
        self._show_items(self.app.backend.state)
        self.query_one("#bp-input", Input).focus()
        self._ready = True

    def on_resize(self, event) -> None:
        self._apply_height(event.size.height)

    def _apply_height(self, height: int) -> None:
        self.query_one("#bp-names", Static).display = height >= TALL
        if self.error:
            self._show_error(self.error)

    # -- following the state ---------------------------------------------------------------------
    def on_state_changed(self, message: StateChanged) -> None:
        if not self._ready:
            return  # on_mount shows the state itself
        state, changed = message.state, message.changed
        if "breakpoints" in changed or "snapshot" in changed:
            self._show_items(state)
        self._check_answer(state)

    def _check_answer(self, state) -> None:
        """Once the training side answered the add we sent: keep the text and say why, or clear it."""
        if self.pending is None or state.versions["breakpoints"] == self._pending_since:
            return
        with state.lock:
            error = state.breakpoint_error
        self.pending = None
        box = self.query_one("#bp-input", Input)
        if error:
            self._show_error(error)
        else:
            self._show_error(None)
            box.value = ""

    def _show_error(self, error: str | None) -> None:
        self.error = error
        line = self.query_one("#bp-error", Static)
        names_shown = self.query_one("#bp-names", Static).display
        line.update(Text("✗ " + (short_reason(error) if names_shown else error)) if error else "")
        line.display = bool(error)

    def _show_items(self, state) -> None:
        with state.lock:
            items = list(state.breakpoints)
            snap = state.snapshot
        hit_id = snap.hit.id if (snap is not None and snap.hit is not None
                                           and state.state == "paused") else None
        self.items = items
        table = self.query_one("#bp-table", DataTable)
        row = table.cursor_row
        table.clear()
        for item in items:
            hit = Text(f"← paused here (step {snap.step})", style="bold yellow") if item["id"] == hit_id else ""
            table.add_row(Text(str(item["id"]), justify="right"), item["describe"], hit, key=str(item["id"]))
        table.display = bool(items)
        self.query_one("#bp-empty", Static).display = not items
        if items:
            table.move_cursor(row=min(max(row, 0), len(items) - 1), animate=False)
        elif table.has_focus:
            self.query_one("#bp-input", Input).focus()

    # -- keys ------------------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            self._show_error("type a breakpoint first, e.g. loss > 2 or step 100")
            return
        state = self.app.backend.state
        self.pending, self._pending_since = text, state.versions["breakpoints"]
        self._show_error(None)
        self.app.backend.add_breakpoint(text)
        self._check_answer(state)   # an in-process backend has answered already

    def action_remove(self) -> None:
        table = self.query_one("#bp-table", DataTable)
        if not table.has_focus or not self.items:
            return
        row = table.cursor_row
        if 0 <= row < len(self.items):
            self.app.backend.remove_breakpoint(int(self.items[row]["id"]))

    def action_close(self) -> None:
        self.dismiss()
