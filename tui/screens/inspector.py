"""enter on a layer: the chain rule from the loss down to that layer, factor by factor.

Backpropagation multiplies one factor per layer between the loss and the weights:

    ∂L/∂w_k = (∂L/∂y)·(∂y/∂a_L)···(∂a_{k+1}/∂a_k)·(∂a_k/∂w_k)

The session measures, per layer, ‖∂L/∂output‖ and ‖∂L/∂input‖; their ratio is the size of that
layer's factor (for an activation it is about its mean local derivative: σ' ≤ 1/4 for a sigmoid,
1 − tanh² for tanh, 0 or 1 for ReLU; for a Linear layer it is what multiplying by Wᵀ does). The
panel multiplies them out from the loss down, so the factor that shrinks (or grows) the gradient
stands out. Below: histograms of the layer's weights, gradients and local derivatives, the
data-loss and penalty parts of each parameter's gradient, and the update/weight ratio over time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from ..throttle import Throttle
from ..format import num
from ..widgets.bayes import layer_bayes_lines
from ..widgets.curvature import edge_context, param_table
from ..widgets.histogram import HistogramKeeper, HistogramPanel
from ..widgets.plots import thin
from .footer import fit_footer, quiet_app_keys

FORMULA = "∂L/∂w_k = (∂L/∂y)·(∂y/∂a_L)···(∂a_{k+1}/∂a_k)·(∂a_k/∂w_k)"
SHRINKS, GROWS = 0.5, 2.0        # factors outside these are highlighted
PLOT_EVERY = 0.3                 # seconds between plot redraws at most
WIDE = 120                       # from this many columns the panels sit side by side
HEALTHY_UPDATE = 1e-3

# What each kind of layer multiplies the gradient by, in the article's words.
FACTOR_NOTES = {
    "Sigmoid": "σ'(z) ≤ 1/4",
    "Tanh": "1 − tanh²(z) ≤ 1",
    "ReLU": "0 or 1",
    "LeakyReLU": "1 or α",
    "Linear": "Wᵀ",
}
DERIVATIVE_NAMES = {"sigmoid": "σ'(z) = σ(1 − σ), at most 1/4", "tanh": "1 − tanh²(z), at most 1",
                    "relu": "ReLU'(z): 0 or 1", "leaky_relu": "LeakyReLU'(z): α or 1"}


@dataclass(frozen=True)
class ChainLink:
    """One factor of the chain-rule product and the gradient norm after multiplying by it."""
    layer: str | None      # None for the loss
    type: str              # the layer's type, 'loss', or 'weight' for the last factor ∂a_k/∂W_k
    formula: str           # the factor as written in the product
    note: str              # what the factor is for this kind of layer
    factor: float | None   # its size: ‖∂L/∂in‖/‖∂L/∂out‖ (for the loss: ‖∂L/∂y‖ itself)
    product: float | None  # the running product: the gradient norm after this factor
    of: str                # what `product` is the norm of


def factor_note(layer) -> str:
    """The factor in words; for an activation also its measured mean local derivative."""
    note = FACTOR_NOTES.get(layer.type, "∂out/∂in")
    if layer.mean_local_derivative is not None:
        note += f", mean {num(layer.mean_local_derivative, 2)}"
    return note


def _weight(layer):
    return layer.params.get("weight") or next(iter(layer.params.values()), None)


def chain_links(layers, name: str) -> list:
    """The factors from the loss down to layer `name` (forward-order `layers`, LayerStats).

    First ‖∂L/∂y‖ (the loss's gradient at the output), then for each layer from the last down to
    the one after `name` its factor ‖∂L/∂in‖/‖∂L/∂out‖ and the running product, which is
    ‖∂L/∂a_k‖ by the time it reaches `name`. Last, for a layer with weights, ∂a_k/∂W_k and the
    weight gradient ‖∂L/∂W_k‖; for one without, its own factor (what it passes further down)."""
    names = [layer.name for layer in layers]
    if name not in names or not layers:
        return []
    k = names.index(name)
    last = layers[-1]
    product = last.grad_out_norm
    links = [ChainLink(None, "loss", "∂L/∂y", "the loss's gradient at the model's output",
                       product, product, "‖∂L/∂y‖")]
    for j in range(len(layers) - 1, k, -1):
        layer = layers[j]
        factor = layer.grad_ratio
        product = product * factor if product is not None and factor is not None else None
        formula = "∂y/∂a_L" if j == len(layers) - 1 else f"∂a_{layer.name}/∂a_{layers[j - 1].name}"
        links.append(ChainLink(layer.name, layer.type, formula, factor_note(layer), factor, product,
                               f"‖∂L/∂a_{layers[j - 1].name}‖"))
    chosen = layers[k]
    w = _weight(chosen)
    if w is not None:
        short = next(s for s, p in chosen.params.items() if p is w)
        grad = w.grad_norm if links[0].product is not None else None   # none before the first step
        factor = grad / product if product and grad is not None else None
        links.append(ChainLink(chosen.name, "weight", f"∂a_{chosen.name}/∂{short}",
                               "the layer's input: ∂L/∂W = (∂L/∂a)ᵀ·x", factor, grad,
                               f"‖∂L/∂{w.name}‖"))
    else:
        factor = chosen.grad_ratio
        product = product * factor if product is not None and factor is not None else None
        below = layers[k - 1].name if k > 0 else "x"
        links.append(ChainLink(chosen.name, chosen.type, f"∂a_{chosen.name}/∂a_{below}", factor_note(chosen),
                               factor, product, f"‖∂L/∂a_{below}‖"))
    return links


def factor_style(factor) -> str:
    if factor is None or not math.isfinite(factor):
        return "bold red"
    if factor < SHRINKS:
        return "bold yellow"
    if factor > GROWS:
        return "bold red"
    return "green"


def _log_bar(value, lo: float, hi: float, width: int = 12) -> str:
    if value is None or not value > 0 or not math.isfinite(value):
        return ""
    if hi <= lo:
        return "█" * width
    frac = (math.log10(value) - lo) / (hi - lo)
    return "█" * max(1, int(round(1 + frac * (width - 1))))


def chain_table(links: list, chosen) -> Table:
    """One row per factor: the layer, what its factor is, its size, and the running product."""
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
    table.add_column("layer", no_wrap=True)
    table.add_column("factor", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("product", justify="right", no_wrap=True)
    table.add_column("(log)", no_wrap=True)
    logs = [math.log10(link.product) for link in links
            if link.product is not None and link.product > 0 and math.isfinite(link.product)]
    lo, hi = (min(logs), max(logs)) if logs else (0.0, 0.0)
    for link in links:
        if link.type == "loss":
            row = (Text("loss", style="bold"), Text("∂L/∂y"), Text(""), Text(num(link.product), style="bold"))
        elif link.type == "weight":
            row = (Text(f"{link.layer} → W", style="bold cyan"), Text("∂a/∂W: its input x"),
                   Text(f"×{num(link.factor)}", style="dim"), Text(num(link.product), style="bold cyan"))
        else:
            row = (Text(f"{link.layer} {link.type}"), Text(link.note, style="dim"),
                   Text(f"×{num(link.factor)}", style=factor_style(link.factor)), Text(num(link.product)))
        table.add_row(*row, Text(_log_bar(link.product, lo, hi), style="blue"))
    return table


def chain_summary(links: list, chosen) -> Text:
    """Plain words under the table: how much the product changed, and which factors did it."""
    out = Text()
    layer_links = [link for link in links if link.type not in ("loss", "weight")]
    start = links[0].product if links else None
    if start is None:
        out.append("No gradients yet: this is the model before its first step. Press n to take one.",
                   style="yellow")
        return out
    reach = layer_links[-1].product if layer_links else start
    if layer_links and reach is not None and start:
        out.append(f"{len(layer_links)} factor{'s' if len(layer_links) != 1 else ''} took the gradient from "
                   f"{num(start)} to {num(reach)}: ×{num(reach / start)} overall.")
        small = [link for link in layer_links if link.factor is not None and link.factor < SHRINKS]
        big = [link for link in layer_links if link.factor is not None and link.factor > GROWS]
        if small:
            out.append(f"\n{len(small)} shrink it (< {SHRINKS:g})", style="yellow")
            worst = min(small, key=lambda link: link.factor)
            out.append(f"; the smallest: {worst.layer} {worst.type} ×{num(worst.factor)}.")
        if big:
            out.append(f"\n{len(big)} grow it (> {GROWS:g})", style="red")
            worst = max(big, key=lambda link: link.factor)
            out.append(f"; the largest: {worst.layer} {worst.type} ×{num(worst.factor)}.")
        measured = chosen.grad_out_norm if links[-1].type == "weight" else chosen.grad_in_norm
        if (measured is not None and reach is not None and measured > 0
                and abs(reach - measured) > 1e-6 * measured):
            out.append(f"\nMeasured directly it is {num(measured)}: the model is not a single chain "
                       "(a skip connection or a reused layer), so the product is only part of it.",
                       style="dim")
    elif not layer_links:
        out.append("This is the last layer: the loss's gradient reaches it directly.")
    if links[-1].type == "weight" and chosen.grad_ratio is not None:
        out.append(f"\nIt passes ‖∂L/∂in‖ = {num(chosen.grad_in_norm)} on to the layer below "
                   f"({factor_note(chosen)}: ×{num(chosen.grad_ratio)}).", style="dim")
    return out


class LayerHistoryPlot(PlotextPlot):
    """log10 of some of the layer's series over the steps: the update/weight ratio of each
    parameter (with the healthy 1e-3 line), or for a layer without parameters the gradient that
    reaches it from the loss side."""

    DEFAULT_CSS = """
    LayerHistoryPlot { height: 12; width: 1fr; }
    """

    def show(self, history: dict, title: str, series: list, reference: float | None = None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        steps = history.get("step")
        drawn = False
        if steps is not None and len(steps):
            width = max(self.size.width - 10, 10)
            for label, name in series:
                values = history.get(name)
                if values is None:
                    continue
                with np.errstate(all="ignore"):
                    y = np.log10(values)
                ok = np.isfinite(y)
                if not ok.any():
                    continue
                x, y = thin(steps[ok], y[ok], width)
                plt.plot(x.tolist(), y.tolist(), label=label, marker="braille")
                drawn = True
            if drawn and reference is not None:
                plt.hline(math.log10(reference), "green")
        plt.xlabel("step")
        self.refresh()


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
                *quiet_app_keys("b", "r", "h", "v")]   # they work; hidden so that the footer fits
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
                    yield Static("curvature: the Hessian diagonal and the lr edge", classes="panel-title")
                    yield Static(id="curvature")
                    yield Static("Bayesian: posterior σ and gradient noise", id="bayes-title",
                                 classes="panel-title")
                    yield Static(id="bayes")
                with Vertical(id="insp-right"):
                    yield HistogramPanel(id="hist-weight")
                    yield HistogramPanel(id="hist-grad")
                    yield HistogramPanel(id="hist-deriv")
                    yield LayerHistoryPlot(id="history-plot")
                    yield Static(id="history-note")
        yield Footer()

    def on_mount(self) -> None:
        self._apply_width(self.app.size.width)
        state = self.app.backend.state
        self.histograms.update(state.snapshot)
        self.histograms.seed(state.first_histograms, 0)   # opened while running: step 0's until new ones
        self._draw_text(state)
        self._draw_bayes(state)
        self._draw_histograms(state)
        self._draw_plot(state)

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        self.set_class(width < WIDE, "-stacked")
        fit_footer(self, width)

    def action_nothing(self) -> None:
        pass

    # -- live updates ----------------------------------------------------------------------
    def refresh_state(self, state, changed: set) -> None:
        try:
            self._refresh_state(state, changed)
        except NoMatches:   # the app is closing and the widgets are already gone
            pass

    def _refresh_state(self, state, changed: set) -> None:
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
        title = Text()
        title.append("Inspector  ", style="bold magenta")
        title.append(f"layer {self.layer_name}", style="bold")
        if layer is not None:
            w = _weight(layer)
            title.append(f"  {layer.type}")
            if w is not None:
                title.append(f" {'×'.join(str(n) for n in w.shape)}")
            if layer.activation is not None:
                title.append(f"  mean f' {num(layer.mean_local_derivative)}")
        if snap is not None:
            title.append(f"   step {snap.step}", style="dim")
            title.append(f"   {state.state}", style="dim")
        title.append("   escape: back", style="dim")
        self.query_one("#insp-title", Static).update(title)
        if layer is None:
            self.links = []
            self.query_one("#chain", Static).update(Text(f"no layer named {self.layer_name!r} in this model",
                                                         style="red"))
            return
        self.links = chain_links(snap.layers, self.layer_name)
        self.query_one("#chain", Static).update(chain_table(self.links, layer))
        self.query_one("#chain-summary", Static).update(chain_summary(self.links, layer))
        self.query_one("#grads", Static).update(self._grads_table(layer, snap))
        self.query_one("#curvature", Static).update(self._curvature_figures(layer, snap, state.model or {}))

    def _grads_table(self, layer, snap):
        if not layer.params:
            return Text("This layer has no parameters: it only passes the gradient on, multiplied by its "
                        "local derivative.", style="dim")
        table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1))
        for header in ("param", "‖∇data‖", "‖∇penalty‖", "‖sum‖", "‖θ‖", "‖Δθ‖/‖θ‖"):
            table.add_column(header, justify="left" if header == "param" else "right", no_wrap=True)
        for short, p in layer.params.items():
            ratio = Text(num(p.update_ratio))
            if p.update_ratio is not None and math.isfinite(p.update_ratio) and p.update_ratio > 0:
                if p.update_ratio < HEALTHY_UPDATE / 100 or p.update_ratio > HEALTHY_UPDATE * 100:
                    ratio.stylize("yellow")
            table.add_row(short, num(p.grad_norm), num(p.penalty_grad_norm), num(p.total_grad_norm),
                          num(p.weight_norm), ratio)
        kind, lam = snap.regularizer
        note = {"none": "no regulariser: the penalty's gradient is 0",
                "L2": f"L2 λ={num(lam)}: penalty gradient 2λθ (weight decay)",
                "L1": f"L1 λ={num(lam)}: penalty gradient λ·sign θ"}.get(kind, f"{kind} λ={num(lam)}")
        caption = Text(f"sum = ∇data + ∇penalty, the gradient the optimiser used; {note} "
                       "(biases are not penalised by default).", style="dim")
        grid = Table.grid()
        grid.add_row(table)
        grid.add_row(caption)
        return grid

    @staticmethod
    def _curvature_figures(layer, snap, model: dict):
        """λ_max and the lr edge for context; per parameter Hᵢᵢ, 1/Hᵢᵢ and the optimiser's step."""
        context = edge_context(snap, model)
        if not layer.params or snap.curvature is None:
            return context
        params = list(layer.params.values())
        table = param_table(params, snap.lr, model.get("optimizer"), snap.curvature, labels=list(layer.params))
        caption = Text("Hᵢᵢ: mean Hessian diagonal (estimate); 1/Hᵢᵢ: the diagonal Newton step; "
                       "step·Hᵢᵢ ≈ 1: the optimiser's step matches it. h: the curvature view.", style="dim")
        grid = Table.grid()
        for row in (context, table, caption):
            grid.add_row(row)
        return grid

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
        w = _weight(layer) if layer is not None else None
        weight_panel.display = grad_panel.display = w is not None
        if w is not None:
            shape = "×".join(str(n) for n in w.shape)
            hist = self.histograms.get(f"{w.name}.weight_hist")
            weight_panel.show(self._title(f"weights {w.name} ({shape})", where),
                              [("", *hist, "cyan")] if hist else [])
            hist = self.histograms.get(f"{w.name}.grad_hist")
            grad_panel.show(self._title(f"gradients ∂L/∂{w.name}", where),
                            [("", *hist, "magenta")] if hist else [],
                            None if hist else "gradients appear after the first step")
        activation = layer.activation if layer is not None else None
        deriv_panel.display = activation is not None
        if activation is not None:
            hist = self.histograms.get(f"{self.layer_name}.deriv_hist")
            deriv_panel.show(self._title(f"local derivative {DERIVATIVE_NAMES.get(activation, activation)}",
                                         where),
                             [("", *hist, "yellow")] if hist else [],
                             "over every unit and example of the batch" if hist else
                             "local derivatives appear after the first step")

    @staticmethod
    def _title(what: str, where: str) -> Text:
        title = Text(what, style="bold")
        title.append(where, style="dim")
        return title

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
