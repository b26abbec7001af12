"""enter on a layer: the chain rule from the loss down to that layer, factor by factor.

Backpropagation multiplies one factor per layer between the loss and the weights:

    ∂L/∂w_k = (∂L/∂y)·(∂y/∂a_L)···(∂a_{k+1}/∂a_k)·(∂a_k/∂w_k)

The session measures, per layer, ‖∂L/∂output‖ and ‖∂L/∂input‖; their ratio is the size of that
layer's factor (for an activation it is about its mean local derivative: σ' ≤ 1/4 for a sigmoid,
1 − tanh² for tanh, 0 or 1 for ReLU; for a Linear layer it is what multiplying by Wᵀ does). The
panel multiplies them out from the loss down, so the factor that shrinks (or grows) the gradient
stands out. Below: histograms of the layer's weights, gradients and local derivatives, the
data-loss and penalty parts of each parameter's gradient, how noisy the batch's gradient is (its
noise/signal ratio), and the update/weight ratio over time.
"""
from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Static

from ..messages import StateChanged
from ..ranks import state_spread
from ..text_batch_noise import batch_noise_panel
from ..text_bayes import layer_bayes_lines
from ..text_inspector import (DERIVATIVE_NAMES, FORMULA, HEALTHY_UPDATE, chain_links, chain_summary, chain_table,
                              curvature_figures, grads_table, inspector_title, layer_weight, panel_title,
                              ranks_section)
from ..throttle import Throttle
from ..widgets.common import HistogramKeeper
from ..widgets.histogram_panel import HistogramPanel
from ..widgets.layer_history_plot import LayerHistoryPlot
from .footer import SteadyFooter, fit_footer, quiet_app_keys

PLOT_EVERY = 0.3                 # seconds between plot redraws at most
WIDE = 120                       # from this many columns the panels sit side by side

CSS = """
InspectorScreen #insp-title { height: auto; background: $panel; padding: 0 1; }
InspectorScreen #insp-body { height: 1fr; }
InspectorScreen #insp-cols { height: auto; }
InspectorScreen #insp-left { width: 1fr; height: auto; padding: 0 1; }
InspectorScreen #insp-right { width: 1fr; height: auto; padding: 0 1; }
InspectorScreen .panel-title { color: $accent; text-style: bold; margin-top: 1; }
InspectorScreen #chain-formula { color: $accent; text-style: bold; }
InspectorScreen #chain-help { color: $text-muted; }
InspectorScreen HistogramPanel { margin-bottom: 1; }
InspectorScreen #history-plot { height: 12; }
InspectorScreen #history-note { color: $text-muted; }
InspectorScreen.-stacked #insp-cols { layout: vertical; }
InspectorScreen.-stacked #insp-left { width: 100%; }
InspectorScreen.-stacked #insp-right { width: 100%; }
InspectorScreen.-stacked #history-plot { height: 10; }
"""


class InspectorScreen(Screen):
    """The chain rule down to one layer, its histograms, and its parameters' gradients."""

    BINDINGS = [Binding("escape", "dismiss", "back"),
                Binding("enter", "nothing", show=False),
                Binding("g", "nothing", show=False),   # the main screen's keys that mean nothing here
                *quiet_app_keys("b", "r", "h", "v", "d")]   # they work; hidden so that the footer fits
    DEFAULT_CSS = CSS
    clock = staticmethod(time.monotonic)

    def __init__(self, layer_name: str):
        super().__init__()
        self.layer_name = layer_name
        self.links: list = []
        self.histograms = HistogramKeeper()
        self.plot_throttle = Throttle(self, PLOT_EVERY, lambda: self._draw_plot(self.app.backend.state))
        self._hist_stale = False

    def compose(self) -> ComposeResult:
        yield Static(id="insp-title")
        with VerticalScroll(id="insp-body"):
            with Horizontal(id="insp-cols"):
                with Vertical(id="insp-left"):
                    yield Static(FORMULA, id="chain-formula")
                    yield Static("each layer multiplies the gradient by its factor; product = ‖∂L/∂a‖ "
                                 "after it (last row: ‖∂L/∂W‖)", id="chain-help")
                    yield Static(id="chain")
                    yield Static(id="chain-summary")
                    yield Static("gradient of each parameter: data loss + penalty", classes="panel-title")
                    yield Static(id="grads")
                    # (only when attached to one rank of several: RankPeers set `state.ranks`)
                    ranks_title = Static("across the ranks of a distributed run", id="ranks-title",
                                         classes="panel-title")
                    ranks = Static(id="ranks")
                    ranks_title.display = ranks.display = False
                    yield ranks_title
                    yield ranks
                    yield Static("curvature: the Hessian diagonal and the lr edge", classes="panel-title")
                    yield Static(id="curvature")
                    yield Static("mini-batch noise: is the batch large enough?", classes="panel-title")
                    yield Static(id="batch-noise")
                    yield Static("Bayesian: posterior σ and gradient noise", id="bayes-title",
                                 classes="panel-title")
                    yield Static(id="bayes")
                with Vertical(id="insp-right"):
                    yield HistogramPanel(id="hist-weight")
                    yield HistogramPanel(id="hist-grad")
                    yield HistogramPanel(id="hist-deriv")
                    yield LayerHistoryPlot(id="history-plot")
                    yield Static(id="history-note")
        yield SteadyFooter()

    def on_mount(self) -> None:
        self._draw_all()

    def show_layer(self, layer_name: str) -> None:
        """Inspect another layer with this screen (the app keeps one inspector between openings)."""
        if layer_name == self.layer_name:
            return
        self.layer_name, self.links = layer_name, []
        self.histograms, self._hist_stale = HistogramKeeper(), False
        if self.is_mounted:
            self.query_one("#insp-body").scroll_home(animate=False)
            self._draw_all()

    def _draw_all(self) -> None:
        self._apply_width(self.app.size.width)
        state = self.app.backend.state
        self.histograms.update(state.snapshot)
        self.histograms.seed(state.first_histograms, 0)   # opened while running: step 0's until new ones
        self._draw_text(state)
        self._draw_bayes(state)
        self._draw_histograms(state)
        self._draw_plot(state)
        self.call_after_refresh(self._show_own_row)

    def _show_own_row(self) -> None:
        """A long chain on a short screen: scroll so that the inspected layer's own row (the
        chain's last) and the summary under it are in sight; the formula above is a scroll up."""
        body, summary = self.query_one("#insp-body"), self.query_one("#chain-summary")
        if summary.region.bottom > body.region.bottom:
            body.scroll_to_widget(summary, animate=False, top=False)

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        self.set_class(width < WIDE, "-stacked")
        fit_footer(self, width)

    def action_nothing(self) -> None:
        pass

    # -- live updates ----------------------------------------------------------------------
    def on_state_changed(self, message: StateChanged) -> None:
        try:
            self._follow(message.state, message.changed)
        except NoMatches:   # the app is closing and the widgets are already gone
            pass

    def _follow(self, state, changed: frozenset) -> None:
        if changed & {"snapshot", "model", "state"}:
            self._draw_text(state)
            snap = state.snapshot
            stale = snap is not None and self.histograms.step not in (None, snap.step)
            if self.histograms.update(snap) or stale != self._hist_stale:
                self._draw_histograms(state)
            self._draw_bayes(state)
        if "history" in changed:
            self.plot_throttle.request()

    # -- drawing -----------------------------------------------------------------------------
    def _layer(self, state):
        snap = state.snapshot
        if snap is None:
            return None
        return next((layer for layer in snap.layers if layer.name == self.layer_name), None)

    def _draw_text(self, state) -> None:
        snap = state.snapshot
        layer = self._layer(state)
        self.query_one("#insp-title", Static).update(inspector_title(state, self.layer_name, layer))
        if layer is None:
            self.links = []
            self.query_one("#chain", Static).update(Text(f"no layer named {self.layer_name!r} in this model",
                                                         style="red"))
            return
        self.links = chain_links(snap.layers, self.layer_name)
        self.query_one("#chain", Static).update(chain_table(self.links, layer))
        self.query_one("#chain-summary", Static).update(chain_summary(self.links, layer))
        self.query_one("#grads", Static).update(grads_table(layer, snap))
        self._draw_ranks(state)
        self.query_one("#curvature", Static).update(curvature_figures(layer, snap, state.model or {}))
        self.query_one("#batch-noise", Static).update(batch_noise_panel(layer, snap))

    def _draw_ranks(self, state) -> None:
        """Under torch.distributed, this layer on every rank; hidden otherwise."""
        section = None
        if getattr(state, "ranks", None):
            section = ranks_section(state_spread(state), self.layer_name)
        self.query_one("#ranks-title").display = self.query_one("#ranks").display = section is not None
        if section is not None:
            self.query_one("#ranks", Static).update(section)

    def _draw_bayes(self, state) -> None:
        """A Bayesian layer's posterior σ (min–max from the latest histogram of its ρ) and its
        parameters' gradient noise; hidden for other layers."""
        layer = self._layer(state)
        lines = (layer_bayes_lines(layer, state.snapshot, self.histograms.histograms, self.histograms.step)
                 if layer is not None else None)
        self.query_one("#bayes-title").display = self.query_one("#bayes").display = lines is not None
        if lines is not None:
            self.query_one("#bayes", Static).update(lines)

    def _draw_histograms(self, state) -> None:
        snap = state.snapshot
        layer = self._layer(state)
        weight_panel = self.query_one("#hist-weight", HistogramPanel)
        grad_panel = self.query_one("#hist-grad", HistogramPanel)
        deriv_panel = self.query_one("#hist-deriv", HistogramPanel)
        step = self.histograms.step
        where = f"  step {step}" if step is not None else ""
        self._hist_stale = snap is not None and step is not None and step != snap.step
        if self._hist_stale:
            where += " (the latest taken: every few steps while running)"
        w = layer_weight(layer) if layer is not None else None
        weight_panel.display = grad_panel.display = w is not None
        if w is not None:
            shape = "×".join(str(n) for n in w.shape)
            hist = self.histograms.get(f"{w.name}.weight_hist")
            weight_panel.show(panel_title(f"weights {w.name} ({shape})", where),
                              [("", *hist, "cyan")] if hist else [])
            hist = self.histograms.get(f"{w.name}.grad_hist")
            grad_panel.show(panel_title(f"gradients ∂L/∂{w.name}", where),
                            [("", *hist, "magenta")] if hist else [],
                            None if hist else "gradients appear after the first step")
        activation = layer.activation if layer is not None else None
        deriv_panel.display = activation is not None
        if activation is not None:
            hist = self.histograms.get(f"{self.layer_name}.deriv_hist")
            deriv_panel.show(panel_title(f"local derivative {DERIVATIVE_NAMES.get(activation, activation)}",
                                         where),
                             [("", *hist, "yellow")] if hist else [],
                             "over every unit and example of the batch" if hist else
                             "local derivatives appear after the first step")

    def _draw_plot(self, state) -> None:
        layer = self._layer(state)
        plot = self.query_one(LayerHistoryPlot)
        note = self.query_one("#history-note", Static)
        if layer is None:
            plot.display = note.display = False
            return
        if layer.params:
            plot.show(state.history, "update/weight ratio: log10 ‖Δθ‖/‖θ‖",
                      [(p.name, f"{p.name}.update_ratio") for p in layer.params.values()], HEALTHY_UPDATE)
            note.update(f"≈{HEALTHY_UPDATE:g} (the green line) is a typical healthy update ratio: far below, "
                        "the layer barely learns; near 1e-1, steps may be too big.")
        else:
            plot.show(state.history, f"gradient reaching layer {layer.name}: log10 ‖∂L/∂a‖",
                      [(f"‖∂L/∂a_{layer.name}‖", f"{layer.name}.grad_out_norm")])
            note.update("what arrives from the loss side each step, before this layer multiplies it by "
                        "its local derivative.")
