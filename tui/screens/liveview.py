"""What the live views (curvature h, Bayesian v) share: a title with the lr and the change asked
for, [ ] to halve or double the lr, throttled plots beside (or, narrow, above) the tables, and
redrawing as the state changes.

A subclass sets TITLE_ID, PLOT_ROWS and PLOT_EVERY, and writes `plots()` (the plot widgets),
`rows_above()` (the rows its text takes above the plots), `_draw_text(state)`,
`_draw_plots(state)` and `title_head(state)` (the title's first line, up to the step).
"""
from __future__ import annotations

import time

from rich.text import Text
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..format import num
from ..messages import StateChanged
from ..throttle import Throttle
from .footer import quiet_app_keys

WIDE = 120                       # from this many columns the plots and the tables sit side by side


class LiveViewScreen(Screen):
    BINDINGS = [
        Binding("escape", "dismiss", "back"),
        Binding("left_square_bracket", "scale_lr(0.5)", "lr÷2", key_display="["),
        Binding("right_square_bracket", "scale_lr(2.0)", "lr×2", key_display="]"),
        Binding("enter", "nothing", show=False),    # main-screen keys that mean nothing here
        Binding("g", "nothing", show=False),
        *quiet_app_keys("b", "r", "s"),   # they work; hidden so that the footer (and q quit) fits
    ]
    TITLE_ID = ""
    PLOT_EVERY = 0.3             # seconds between plot redraws at most
    PLOT_ROWS = (12, 30)         # a plot's height beside the tables: at least, at most
    REDRAW_TEXT_ON = frozenset({"snapshot", "model", "state"})
    clock = staticmethod(time.monotonic)

    def __init__(self):
        super().__init__()
        self.plot_throttle = Throttle(self, self.PLOT_EVERY, lambda: self._draw_plots(self.app.backend.state))
        self.lr_request: tuple | None = None    # (factor so far, step when asked): not yet in a snapshot

    # -- for subclasses ----------------------------------------------------------------------
    def plots(self) -> list:
        raise NotImplementedError

    def rows_above(self) -> int:
        raise NotImplementedError

    def _draw_text(self, state) -> None:
        raise NotImplementedError

    def _draw_plots(self, state) -> None:
        raise NotImplementedError

    def title_head(self, state) -> Text:
        raise NotImplementedError

    # -- layout ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self._apply_width(self.app.size.width)
        state = self.app.backend.state
        self._draw_text(state)
        self._draw_plots(state)

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)
        self._size_plots()

    def _apply_width(self, width: int) -> None:
        self.set_class(width < WIDE, "-stacked")
        self.query_one(Footer).compact = width < WIDE    # so that 80 columns hold every key

    def _size_plots(self) -> None:
        """Beside the tables, the plots share the height the text above leaves (stacked, the CSS
        keeps them short so that the tables below stay in reach)."""
        plots = [plot for plot in self.plots() if plot.display]
        if self.has_class("-stacked") or not plots:
            for plot in plots:
                plot.styles.height = None
            return
        low, high = self.PLOT_ROWS
        rows = min(max((self.app.size.height - self.rows_above()) // len(plots), low), high)
        for plot in plots:
            plot.styles.height = rows

    def action_nothing(self) -> None:
        pass

    # -- the learning rate -------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        if action == "scale_lr":
            return self.app.backend.state.state not in ("finished", "stopped") or None
        return True

    def action_scale_lr(self, factor: float) -> None:
        self.app.backend.scale_lr(factor)
        state = self.app.backend.state
        step = state.snapshot.step if state.snapshot is not None else 0
        so_far = self.lr_request[0] if self.lr_request is not None else 1.0
        self.lr_request = (so_far * factor, step)
        self._draw_title(state)

    def _draw_title(self, state, lr_name: str = "lr", keys: str = "keys: [ halve lr · ] double lr · escape back") -> None:
        """The subclass's head line, then the lr change asked for and not yet in a snapshot, then the keys."""
        snap = state.snapshot
        if self.lr_request is not None and snap is not None and snap.step > self.lr_request[1]:
            self.lr_request = None        # a step has run with it: the snapshot's lr is the new one
        text = self.title_head(state)
        if self.lr_request is not None:
            factor = self.lr_request[0]
            text.append(f"\n→ {lr_name} ", style="bold yellow")
            text.append(f"×{factor:g}" if factor >= 1 else f"÷{1 / factor:g}", style="bold yellow")
            if snap is not None:
                text.append(f" = {num(snap.lr * factor)}", style="bold yellow")
            text.append(" from the next step" + (" (paused: press n or space)" if state.state == "paused"
                                                   else ""), style="yellow")
        text.append("\n" + keys, style="dim")
        self.query_one(f"#{self.TITLE_ID}", Static).update(text)

    # -- live updates ------------------------------------------------------------------------
    def on_state_changed(self, message: StateChanged) -> None:
        state, changed = message.state, message.changed
        try:
            if changed & self.REDRAW_TEXT_ON:
                self._draw_text(state)
            if "history" in changed:
                self.plot_throttle.request()
        except NoMatches:   # the app is closing and the widgets are already gone
            pass
