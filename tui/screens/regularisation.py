"""r: the regulariser, live. Switch between none, L1 and L2, double or halve λ, and watch what
it does to each layer's weights while the model trains.

L2 adds λΣθ² to the loss; its gradient 2λθ pulls each weight towards zero in proportion to its
size (weight decay): weights shrink but stay non-zero. L1 adds λΣ|θ|; its gradient λ·sign θ
pushes every weight by the same amount, so the small ones reach exactly zero (sparsity).
Per layer: the weight histogram now against step 0, the fraction of weights that are (nearly)
zero, ‖θ‖ over the steps, and the data-loss and penalty gradients side by side.
"""
from __future__ import annotations

import math
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Static

from ..messages import StateChanged
from ..text_regularisation import title_text
from ..throttle import Throttle
from ..widgets.common import HistogramKeeper
from ..widgets.param_panel import ParamPanel
from .footer import SteadyFooter, fit_footer, quiet_app_keys

DEFAULT_LAM = 1e-3
REDRAW_EVERY = 0.3             # seconds between redraws of the layer panels at most


def weight_params(snapshot) -> list:
    """(layer name, ParamStats) of each penalised-by-default parameter: every weight, not biases."""
    out = []
    if snapshot is None:
        return out
    for layer in snapshot.layers:
        for short, p in layer.params.items():
            if short != "bias":
                out.append((layer.name, p))
    return out


CSS = """
RegularisationScreen #reg-title { height: auto; background: $panel; padding: 0 1; }
RegularisationScreen #reg-body { height: 1fr; padding: 0 1; }
RegularisationScreen #reg-empty { color: $text-muted; }
"""


class RegularisationScreen(Screen):
    """Switch the regulariser and λ; see its effect on every layer's weights as the model trains."""

    BINDINGS = [
        Binding("escape", "dismiss", "back"),
        Binding("r", "dismiss", "back", show=False),
        Binding("enter", "nothing", show=False),    # main-screen keys that mean nothing here
        Binding("g", "nothing", show=False),
        Binding("0", "set_reg('none')", "none"),
        Binding("1", "set_reg('L1')", "L1"),
        Binding("2", "set_reg('L2')", "L2"),
        Binding("plus,equals_sign", "scale_lam(2.0)", "λ×2", key_display="+"),
        Binding("minus", "scale_lam(0.5)", "λ÷2", key_display="-"),
        *quiet_app_keys("b", "h", "v", "s", "d"),   # they work; hidden so that the footer fits
    ]
    DEFAULT_CSS = CSS
    clock = staticmethod(time.monotonic)

    def __init__(self):
        super().__init__()
        self.histograms = HistogramKeeper()
        self.requested: tuple | None = None   # (kind, λ) sent, not yet seen in a snapshot
        self.message: str | None = None
        self._panels: dict = {}
        self.panel_throttle = Throttle(self, REDRAW_EVERY, lambda: self._draw_panels(self.app.backend.state))

    def compose(self) -> ComposeResult:
        yield Static(id="reg-title")
        yield VerticalScroll(id="reg-body")
        yield SteadyFooter()

    def on_mount(self) -> None:
        fit_footer(self, self.app.size.width)
        state = self.app.backend.state
        self.histograms.update(state.snapshot)
        self._draw_title(state)
        self._draw_panels(state)

    def on_resize(self, event) -> None:
        fit_footer(self, event.size.width)

    def action_nothing(self) -> None:
        pass

    # -- what is in use, and what was asked for ---------------------------------------------
    def current(self) -> tuple:
        """(kind, λ) as the user last set it: the request not yet applied, else the snapshot's."""
        if self.requested is not None:
            return self.requested
        snap = self.app.backend.state.snapshot
        return tuple(snap.regularizer) if snap is not None else ("none", 0.0)

    def action_set_reg(self, kind: str) -> None:
        current_kind, lam = self.current()
        if kind == "none":
            lam = 0.0
        elif current_kind == "none" or not lam > 0:
            lam = DEFAULT_LAM
        self._request(kind, lam)

    def action_scale_lam(self, factor: float) -> None:
        kind, lam = self.current()
        if kind == "none":
            self.message = "no regulariser on: press 1 for L1 or 2 for L2 first"
            self._draw_title(self.app.backend.state)
            return
        self._request(kind, lam * factor)

    def _request(self, kind: str, lam: float) -> None:
        self.app.backend.set_regularizer(kind, lam if kind != "none" else None)
        self.requested = (kind, float(lam))
        self.message = None
        self._draw_title(self.app.backend.state)

    # -- live updates ----------------------------------------------------------------------
    def on_state_changed(self, message: StateChanged) -> None:
        try:
            self._follow(message.state, message.changed)
        except NoMatches:   # the app is closing and the widgets are already gone
            pass

    def _follow(self, state, changed: frozenset) -> None:
        if changed & {"snapshot", "state", "model"}:
            self.histograms.update(state.snapshot)
            self._draw_title(state)
        if changed & {"snapshot", "history"}:
            self.panel_throttle.request()

    # -- drawing -----------------------------------------------------------------------------
    def _draw_title(self, state) -> None:
        snap = state.snapshot
        in_use = tuple(snap.regularizer) if snap is not None else ("none", 0.0)
        if self.requested is not None and _same(self.requested, in_use):
            self.requested = None
        self.query_one("#reg-title", Static).update(title_text(state, in_use, self.requested, self.message))

    def _draw_panels(self, state) -> None:
        snap = state.snapshot
        body = self.query_one("#reg-body", VerticalScroll)
        params = weight_params(snap)
        if not params:
            if not body.query("#reg-empty"):
                body.mount(Static("this model has no weights to regularise", id="reg-empty"))
            return
        first = state.first_histograms or {}
        latest = self.histograms
        for layer, p in params:
            panel = self._panels.get(p.name)
            if panel is None:
                panel = self._panels[p.name] = ParamPanel(layer, p.name)
                body.mount(panel)
            hist = latest.get(f"{p.name}.weight_hist")
            now = (*hist, latest.step) if hist is not None and latest.step != 0 else None
            panel.show(p, state.history, now, first.get(f"{p.name}.weight_hist"))


def _same(a: tuple, b: tuple) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "none":
        return True
    return math.isclose(float(a[1]), float(b[1]), rel_tol=1e-9, abs_tol=0.0)
