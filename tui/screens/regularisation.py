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

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from ..throttle import Throttle
from ..format import num, pct
from ..widgets.histogram import HistogramKeeper, first_last, histogram_lines, sparkline
from .footer import fit_footer, quiet_app_keys

DEFAULT_LAM = 1e-3
SPARSE_BELOW = 1e-3            # the session's sparsity threshold (Thresholds.sparsity_threshold)
REDRAW_EVERY = 0.3             # seconds between redraws of the layer panels at most

EXPLAIN = {
    "none": ("no regulariser", "the loss is the data loss alone: nothing pulls the weights towards zero."),
    "L2": ("L2: penalty λΣθ², gradient 2λθ",
           "weight decay: each weight is pulled towards 0 in proportion to its size, so weights shrink "
           "but stay non-zero."),
    "L1": ("L1: penalty λΣ|θ|, gradient λ·sign θ",
           "the same push for every weight whatever its size, so it drives small weights to exactly zero "
           "(a sparse model)."),
}


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


class ParamPanel(Widget):
    """One weight: histogram now vs step 0, sparsity, ‖θ‖ over the steps, data vs penalty gradient."""

    DEFAULT_CSS = """
    ParamPanel { height: auto; width: 1fr; margin-bottom: 1; text-wrap: nowrap; text-overflow: clip; }
    """

    def __init__(self, layer: str, param: str, **kwargs):
        super().__init__(**kwargs)
        self.layer_name, self.param_name = layer, param
        self._stats = None
        self._history: dict = {}
        self._now = None          # (counts, edges, step)
        self._first = None        # (counts, edges)

    def show(self, stats, history: dict, now, first) -> None:
        self._stats, self._history, self._now, self._first = stats, history, now, first
        self.refresh(layout=True)

    def lines(self, width: int) -> list:
        p = self._stats
        if p is None:
            return [Text(self.param_name)]
        out = []
        head = Text()
        head.append(p.name, style="bold")
        head.append(f"  {'×'.join(str(n) for n in p.shape)}", style="dim")
        if self.layer_name != p.name.rpartition(".")[0] and self.layer_name != "model":
            head.append(f"  layer {self.layer_name}", style="dim")
        head.append("   ‖θ‖ ")
        head.append(num(p.weight_norm), style="bold")
        head.append("   sparsity ")
        head.append(pct(p.sparsity), style="bold")
        head.append(f" (|θ| < {SPARSE_BELOW:g})", style="dim")
        out.append(head)

        series = []
        if self._first is not None:
            series.append(("step 0", *self._first, "blue"))
        if self._now is not None:
            counts, edges, step = self._now
            series.append((f"step {step}", counts, edges, "cyan"))
        out += [Text("  ") + line for line in histogram_lines(series, width - 2, rows=2)]

        label_width = 11
        spark_width = max(min(width - label_width - 40, 40), 8)
        for name, label, fmt in ((f"{p.name}.weight_norm", "‖θ‖", num), (f"{p.name}.sparsity", "sparsity", pct)):
            values = self._history.get(name)
            line = Text(f"  {label:<{label_width - 2}}", style="dim")
            ends = first_last(self._history, name)
            if values is None or ends is None:
                line.append("no history yet", style="dim")
            else:
                line.append(sparkline(values, spark_width), style="green")
                first_step, first, last = ends
                line.append(f"  {fmt(first)} at step {first_step} → {fmt(last)}", style="dim")
                if fmt is num and first:
                    line.append(f" ({(last - first) / abs(first):+.1%})", style="dim")
            out.append(line)

        data, pen = p.grad_norm, p.penalty_grad_norm
        line = Text(f"  {'gradient':<{label_width - 2}}", style="dim")
        line.append("data ", style="dim")
        line.append(num(data), style="bold cyan")
        line.append("  penalty ", style="dim")
        line.append(num(pen), style="bold magenta")
        total = (data or 0.0) + (pen or 0.0)
        bar = 20
        if total > 0 and math.isfinite(total):
            share = (pen or 0.0) / total
            n_pen = int(round(share * bar))
            line.append("  ")
            line.append("█" * (bar - n_pen), style="cyan")
            line.append("█" * n_pen, style="magenta")
            line.append(f" {share:.0%} penalty", style="dim")
        out.append(line)
        return out

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.lines(max(width, 20)))

    def render(self) -> Text:
        text = Text("\n").join(self.lines(max(self.size.width, 20)))
        text.no_wrap = True
        return text


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
        *quiet_app_keys("b", "h", "v", "s"),   # they work; hidden so that the footer fits
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
        yield Footer()

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
    def refresh_state(self, state, changed: set) -> None:
        try:
            self._refresh_state(state, changed)
        except NoMatches:   # the app is closing and the widgets are already gone
            pass

    def _refresh_state(self, state, changed: set) -> None:
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
        kind, lam = in_use
        name, effect = EXPLAIN.get(kind, (kind, ""))
        text = Text()
        text.append("Regularisation  ", style="bold magenta")
        text.append(f" {kind if kind != 'none' else 'none'} ", style="bold reverse " +
                    ("green" if kind != "none" else "yellow"))
        if kind != "none":
            text.append("  λ = ")
            text.append(num(lam), style="bold")
            if snap is not None:
                text.append(f"   penalty {num(snap.penalty)}")
        if snap is not None:
            text.append(f"   data loss {num(snap.loss, 4)}   step {snap.step}", style="dim")
        text.append("\n")
        text.append(name, style="bold")
        text.append(f": {effect}" if kind == "none" else f" — {effect}")
        if self.requested is not None:
            r_kind, r_lam = self.requested
            text.append("\n→ ", style="bold yellow")
            text.append(f"{r_kind}" + (f" λ = {num(r_lam)}" if r_kind != "none" else ""), style="bold yellow")
            if state.state in ("finished", "stopped"):
                text.append(" is set, but training has ended: no more steps will use it", style="yellow")
            else:
                text.append(" applies from the next step" +
                            (" (paused: press n or space)" if state.state == "paused" else ""), style="yellow")
        if self.message:
            text.append("\n" + self.message, style="yellow")
        text.append("\nkeys: 0 none · 1 L1 · 2 L2 · + double λ · - halve λ · escape back", style="dim")
        self.query_one("#reg-title", Static).update(text)

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
