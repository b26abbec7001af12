"""d: the data view. The training points and the model's answer over their plane or line, redrawn
as training runs, so the decision boundary (or the fitted curve) forms while the gradients flow.

Two input features and class labels: the plane coloured by the class the model predicts, brighter
where it is surer, with the points on it (✕ where the model puts one on the wrong side). Two
features and a numeric target: the plane coloured by the model's output. One feature: the fitted
curve over the points. Other inputs: the view says why it has no picture. [ ] halve or double the
lr here too, to watch what a too-large step does to the boundary.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widget import Widget
from textual.widgets import Static

from ..text_dataview import data_title, legend, picture, plane_size
from .footer import SteadyFooter
from .liveview import LiveViewScreen

CSS = """
DataScreen #data-title { height: auto; background: $panel; padding: 0 1; }
DataScreen #data-body { layout: horizontal; height: 1fr; margin: 1 1 0 1; }
DataScreen #data-picture { height: 1fr; }
DataScreen #data-legend { width: 1fr; height: auto; padding: 0 0 0 2; }
DataScreen #data-body.-stacked { layout: vertical; }
DataScreen #data-body.-stacked #data-picture { width: 100%; }
DataScreen #data-body.-stacked #data-legend { width: 100%; padding: 0; margin-top: 1; }
"""
LEGEND_WIDTH = 34   # beside the picture the legend needs this many columns, else it goes below


class DataPicture(Widget):
    """The picture, drawn for the space it has."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.view = None

    def render(self):
        return picture(self.view, self.size.width, self.size.height)


class DataScreen(LiveViewScreen):
    BINDINGS = LiveViewScreen.BINDINGS + [
        Binding("d", "dismiss", "back", show=False),
        Binding("h", "app.curvature", "curv", show=False),   # they work; hidden so that the footer fits
        Binding("v", "app.bayes", "bayes", show=False),
    ]
    DEFAULT_CSS = CSS
    TITLE_ID = "data-title"
    PLOT_EVERY = 0.25
    REDRAW_TEXT_ON = LiveViewScreen.REDRAW_TEXT_ON | {"data_view"}

    def compose(self) -> ComposeResult:
        yield Static(id="data-title")
        with Container(id="data-body"):
            yield DataPicture(id="data-picture")
            yield Static(id="data-legend")
        yield SteadyFooter()

    def plots(self) -> list:
        return []

    def rows_above(self) -> int:
        return 0

    def title_head(self, state):
        return data_title(state)

    def _draw_text(self, state) -> None:
        self._draw_title(state)
        self.query_one("#data-legend", Static).update(legend(state.data_view))

    def _draw_plots(self, state) -> None:
        shown = self.query_one(DataPicture)
        if shown.view is not state.data_view:
            shown.view = state.data_view
            self._arrange()
            shown.refresh()

    def on_resize(self, event) -> None:
        super().on_resize(event)
        self.call_after_refresh(self._arrange)

    def _arrange(self) -> None:
        """A plane's picture keeps its proportions: the legend goes beside it where the columns
        it leaves are enough, else below (a curve takes the whole width)."""
        body, shown = self.query_one("#data-body"), self.query_one(DataPicture)
        view = shown.view
        width, height = body.size
        side = False
        if view is not None and view.kind in ("classes", "surface") and width and height:
            fitted, _ = plane_size(view, width - LEGEND_WIDTH, height)
            side = width - fitted >= LEGEND_WIDTH
            shown.styles.width = fitted if side else None
        body.set_class(not side, "-stacked")

    def on_state_changed(self, message) -> None:
        super().on_state_changed(message)
        if "data_view" in message.changed:
            self.plot_throttle.request()
