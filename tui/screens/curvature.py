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

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from ..text_curvature import curvature_lines, curvature_title, newton_lines, param_caption, param_table
from ..widgets.edge_plot import EdgePlot
from ..widgets.newton_plot import NewtonPlot
from .footer import SteadyFooter
from .liveview import LiveViewScreen

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


class CurvatureScreen(LiveViewScreen):
    """λ_max, tr H and the lr edge over the steps; the Hessian diagonal per parameter; Newton's state."""

    BINDINGS = LiveViewScreen.BINDINGS + [
        Binding("h", "dismiss", "back", show=False),
        Binding("v", "app.bayes", "bayes", show=False),   # works, but leaves the footer room at 80 columns
        Binding("d", "app.data_view", "data", show=False),
    ]
    DEFAULT_CSS = CSS
    TITLE_ID = "curv-title"
    PLOT_ROWS = (14, 40)

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
        yield SteadyFooter()

    def plots(self) -> list:
        return [self.query_one(EdgePlot), self.query_one(NewtonPlot)]

    def rows_above(self) -> int:
        return 3 + 4 + 1 + 2 + (7 if self.query_one("#newton").display else 0)   # title, summary, footer

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

    def title_head(self, state) -> Text:
        return curvature_title(state)

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
