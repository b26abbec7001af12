"""h: curvature, live. The Hessian H of the loss says how the gradient changes as the weights move.

Its largest eigenvalue λ_max sets the learning-rate edge: one gradient-descent step multiplies
the error along H's top eigenvector by (1 − η·λ_max), so plain gradient descent is stable only
while η < 2/λ_max (momentum moves the edge out). The view plots the lr against the edge over the
steps on a log scale, so the lr crossing the edge is visible, and [ ] halve or double the lr to
watch the lr_too_large warning clear. Per parameter: the Hessian diagonal Hᵢᵢ, the diagonal
Newton step 1/Hᵢᵢ, and the optimiser's own step beside it (Adam's η/(√v̂+ε) approximates it).
With Newton's method: its report on the last step and ‖g‖ over the steps, on a log scale.
"""
from __future__ import annotations

import time

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..format import num
from ..throttle import Throttle
from ..widgets.curvature import (EdgePlot, NewtonPlot, curvature_lines, newton_lines, param_caption,
                                 param_table)

PLOT_EVERY = 0.3                 # seconds between plot redraws at most
WIDE = 120                       # from this many columns the plots and the table sit side by side
PLOT_ROWS = (14, 40)             # a plot's height beside the table: at least, at most

CSS = """
CurvatureScreen #curv-title { height: auto; background: $panel; padding: 0 1; }
CurvatureScreen #curv-body { height: 1fr; padding: 0 1; }
CurvatureScreen #curv-summary { height: auto; }
CurvatureScreen #newton { height: auto; margin-top: 1; }
CurvatureScreen #curv-cols { height: auto; margin-top: 1; }
CurvatureScreen #curv-plots { width: 1fr; height: auto; }
CurvatureScreen #curv-table { width: 1fr; height: auto; padding-left: 2; }
CurvatureScreen EdgePlot, CurvatureScreen NewtonPlot { height: 14; }
CurvatureScreen .panel-title { color: $accent; text-style: bold; }
CurvatureScreen #curv-cols.-no-plots #curv-table { padding-left: 0; }
CurvatureScreen.-stacked #curv-cols { layout: vertical; }
CurvatureScreen.-stacked #curv-plots { width: 100%; }
CurvatureScreen.-stacked #curv-table { width: 100%; padding-left: 0; margin-top: 1; }
CurvatureScreen.-stacked EdgePlot, CurvatureScreen.-stacked NewtonPlot { height: 11; }
CurvatureScreen.-stacked FooterKey.-command-palette { display: none; }
"""


def _all_params(snapshot) -> list:
    return [p for layer in snapshot.layers for p in layer.params.values()] if snapshot is not None else []


class CurvatureScreen(Screen):
    """λ_max, tr H and the lr edge over the steps; the Hessian diagonal per parameter; Newton's state."""

    BINDINGS = [
        Binding("escape", "dismiss", "back"),
        Binding("q,h", "dismiss", "back", show=False),
        Binding("left_square_bracket", "scale_lr(0.5)", "lr÷2", key_display="["),
        Binding("right_square_bracket", "scale_lr(2.0)", "lr×2", key_display="]"),
        Binding("enter", "nothing", show=False),    # main-screen keys that mean nothing here
        Binding("g", "nothing", show=False),
        Binding("v", "app.bayes", "bayes", show=False),   # works, but leaves the footer room at 80 columns
    ]
    DEFAULT_CSS = CSS
    clock = staticmethod(time.monotonic)

    def __init__(self):
        super().__init__()
        self.plot_throttle = Throttle(self, PLOT_EVERY, lambda: self._draw_plots(self.app.backend.state))
        self.lr_request: tuple | None = None    # (factor so far, step when asked): not yet in a snapshot

    def compose(self) -> ComposeResult:
        yield Static(id="curv-title")
        with VerticalScroll(id="curv-body"):
            yield Static(id="curv-summary")
            with Vertical(id="newton"):
                yield Static(id="newton-title", classes="panel-title")
                yield Static(id="newton-state")
            with Horizontal(id="curv-cols"):
                with Vertical(id="curv-plots"):
                    yield EdgePlot(id="edge-plot")
                    yield NewtonPlot(id="newton-plot")
                with Vertical(id="curv-table"):
                    yield Static("Hessian diagonal per parameter", classes="panel-title")
                    yield Static(id="curv-params")
        yield Footer()

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
        """Beside the table, the plots share the height the text above leaves (stacked, the CSS
        keeps them short so that the table below stays in reach)."""
        plots = [plot for plot in (self.query_one(EdgePlot), self.query_one(NewtonPlot)) if plot.display]
        if self.has_class("-stacked") or not plots:
            for plot in plots:
                plot.styles.height = None
            return
        above = 3 + 4 + 1 + 2 + (7 if self.query_one("#newton").display else 0)   # title, summary, footer
        low, high = PLOT_ROWS
        rows = min(max((self.app.size.height - above) // len(plots), low), high)
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

    # -- live updates ----------------------------------------------------------------------
    def refresh_state(self, state, changed: set) -> None:
        try:
            if changed & {"snapshot", "model", "state"}:
                self._draw_text(state)
            if "history" in changed:
                self.plot_throttle.request()
        except NoMatches:   # the app is closing and the widgets are already gone
            pass

    # -- drawing -----------------------------------------------------------------------------
    def _draw_text(self, state) -> None:
        self._draw_title(state)
        snap, model = state.snapshot, state.model or {}
        self.query_one("#curv-summary", Static).update(curvature_lines(snap, model))
        newton = snap.optimizer_state if snap is not None else None
        self.query_one("#newton").display = bool(newton)
        if newton:
            self.query_one("#newton-title", Static).update(f"Newton's method, step {newton.get('step', '-')}")
            self.query_one("#newton-state", Static).update(newton_lines(newton))
        params = _all_params(snap)
        curvature = snap.curvature if snap is not None else None
        table = self.query_one("#curv-table")
        table.display = bool(params) and curvature is not None
        if table.display:
            optimizer = model.get("optimizer")
            self.query_one("#curv-params", Static).update(
                Group(param_table(params, snap.lr, optimizer, curvature), Text(""),
                      param_caption(params, optimizer, curvature)))

    def _draw_title(self, state) -> None:
        snap, model = state.snapshot, state.model or {}
        if self.lr_request is not None and snap is not None and snap.step > self.lr_request[1]:
            self.lr_request = None        # a step has run with it: the snapshot's lr is the new one
        text = Text()
        text.append("Curvature  ", style="bold magenta")
        text.append(model.get("optimizer", ""), style="bold")
        if snap is not None:
            text.append(f"  lr {num(snap.lr)}")
            text.append(f"   step {snap.step}   {state.state}", style="dim")
        if self.lr_request is not None:
            factor = self.lr_request[0]
            text.append("\n→ lr ", style="bold yellow")
            text.append(f"×{factor:g}" if factor >= 1 else f"÷{1 / factor:g}", style="bold yellow")
            if snap is not None:
                text.append(f" = {num(snap.lr * factor)}", style="bold yellow")
            text.append(" from the next step" + (" (paused: press n or space)" if state.state == "paused"
                                                   else ""), style="yellow")
        text.append("\nkeys: [ halve lr · ] double lr · escape back", style="dim")
        self.query_one("#curv-title", Static).update(text)

    def _draw_plots(self, state) -> None:
        snap = state.snapshot
        history = state.history
        curvature = snap.curvature if snap is not None else None
        edge_plot = self.query_one(EdgePlot)
        edge_plot.display = curvature is not None
        if curvature is not None:
            edge_plot.display = edge_plot.show(history, curvature.edge_formula)
        newton_plot = self.query_one(NewtonPlot)
        newton_plot.display = "newton.grad_norm" in history
        if newton_plot.display:
            newton_plot.display = newton_plot.show(history)
        # nothing to plot (one measurement, no Newton): the table takes the whole width
        plotted = edge_plot.display or newton_plot.display
        self.query_one("#curv-plots").display = plotted
        self.query_one("#curv-cols").set_class(not plotted, "-no-plots")
        self._size_plots()
