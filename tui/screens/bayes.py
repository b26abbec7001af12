"""v: Bayesian layers and samplers, live.

Variational inference (cm.nn.BayesLinear trained on −ELBO) fits a distribution q over the weights
by maximising the ELBO = E_q[log p(y|X,θ)] − KL(q‖prior): the data fit of weights drawn from q,
minus how far q has moved from the prior. The view plots the two terms over the steps, each on
its own scale, shows the latest values, the posterior σ of each layer against its first value
(σ stays small where the data constrain the weights and grows towards the prior's where they do
not), the gradient noise of each parameter (the loss is a one-draw Monte Carlo estimate, so its
gradient is random: above 1, one draw's gradient is mostly noise) and the Monte Carlo estimate of
the loss with its error bar. With a sampler (cm.bayes.HMC): the acceptance rate over the steps,
the sampler's state after the last step, and σ per layer from the chain. [ ] halve or double the
lr, which for HMC is the leapfrog step size ε.
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
from ..widgets.bayes import (AcceptancePlot, ElboPlot, SigmaPlot, bayes_info, elbo_caption, elbo_lines, has_bayes,
                             hmc_lines, noise_caption, noise_table, not_sampled_text, nothing_bayesian_text,
                             sigma_caption, sigma_missing_text, sigma_table)

PLOT_EVERY = 0.3                 # seconds between plot redraws at most
WIDE = 120                       # from this many columns the plots and the tables sit side by side
PLOT_ROWS = (12, 30)             # a plot's height beside the tables: at least, at most

CSS = """
BayesScreen #bayes-title { height: auto; background: $panel; padding: 0 1; }
BayesScreen #bayes-body { height: 1fr; padding: 0 1; }
BayesScreen #bayes-summary { height: auto; }
BayesScreen #hmc { height: auto; margin-top: 1; }
BayesScreen #hmc.-first { margin-top: 0; }
BayesScreen #bayes-cols { height: auto; margin-top: 1; }
BayesScreen #bayes-plots { width: 1fr; height: auto; }
BayesScreen #bayes-tables { width: 1fr; height: auto; padding-left: 2; }
BayesScreen ElboPlot, BayesScreen AcceptancePlot, BayesScreen SigmaPlot { height: 12; }
BayesScreen .panel-title { color: $accent; text-style: bold; }
BayesScreen #noise-title { margin-top: 1; }
BayesScreen #elbo-caption { height: auto; margin-bottom: 1; }
BayesScreen #bayes-cols.-no-plots #bayes-tables { padding-left: 0; }
BayesScreen.-stacked #bayes-cols { layout: vertical; }
BayesScreen.-stacked #bayes-plots { width: 100%; }
BayesScreen.-stacked #bayes-tables { width: 100%; padding-left: 0; margin-top: 1; }
BayesScreen.-stacked ElboPlot, BayesScreen.-stacked AcceptancePlot, BayesScreen.-stacked SigmaPlot { height: 11; }
BayesScreen.-stacked FooterKey.-command-palette { display: none; }
"""


class BayesScreen(Screen):
    """The ELBO's terms over the steps, posterior σ per layer, gradient noise, the MC loss; HMC's state."""

    BINDINGS = [
        Binding("escape", "dismiss", "back"),
        Binding("q,v", "dismiss", "back", show=False),
        Binding("left_square_bracket", "scale_lr(0.5)", "lr÷2", key_display="["),
        Binding("right_square_bracket", "scale_lr(2.0)", "lr×2", key_display="]"),
        Binding("enter", "nothing", show=False),    # main-screen keys that mean nothing here
        Binding("g", "nothing", show=False),
        Binding("h", "app.curvature", "curv", show=False),   # works, but leaves the footer room at 80 columns
    ]
    DEFAULT_CSS = CSS
    clock = staticmethod(time.monotonic)

    def __init__(self):
        super().__init__()
        self.plot_throttle = Throttle(self, PLOT_EVERY, lambda: self._draw_plots(self.app.backend.state))
        self.lr_request: tuple | None = None    # (factor so far, step when asked): not yet in a snapshot

    def compose(self) -> ComposeResult:
        yield Static(id="bayes-title")
        with VerticalScroll(id="bayes-body"):
            yield Static(id="bayes-summary")
            with Vertical(id="hmc"):
                yield Static(id="hmc-title", classes="panel-title")
                yield Static(id="hmc-state")
            with Horizontal(id="bayes-cols"):
                with Vertical(id="bayes-plots"):
                    yield ElboPlot(id="elbo-plot")
                    yield Static(id="elbo-caption")
                    yield AcceptancePlot(id="accept-plot")
                    yield SigmaPlot(id="sigma-plot")
                with Vertical(id="bayes-tables"):
                    yield Static(id="sigma-title", classes="panel-title")
                    yield Static(id="sigma-table")
                    yield Static("Gradient noise per parameter", id="noise-title", classes="panel-title")
                    yield Static(id="noise-table")
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
        """Beside the tables, the plots share the height the text above leaves (stacked, the CSS
        keeps them short so that the tables below stay in reach)."""
        plots = [plot for plot in (self.query_one(ElboPlot), self.query_one(AcceptancePlot),
                                   self.query_one(SigmaPlot)) if plot.display]
        if self.has_class("-stacked") or not plots:
            for plot in plots:
                plot.styles.height = None
            return
        summary = self.query_one("#bayes-summary").display and self._summary_lines or 0
        caption = 4 if self.query_one("#elbo-caption").display else 0
        above = 3 + summary + 1 + 2 + caption + (7 if self.query_one("#hmc").display else 0)   # title, footer
        low, high = PLOT_ROWS
        rows = min(max((self.app.size.height - above) // len(plots), low), high)
        for plot in plots:
            plot.styles.height = rows

    _summary_lines = 0

    def action_nothing(self) -> None:
        pass

    # -- the learning rate (HMC: the step size) ------------------------------------------------
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
            if changed & {"snapshot", "model", "state", "history"}:
                self._draw_text(state)
            if "history" in changed:
                self.plot_throttle.request()
        except NoMatches:   # the app is closing and the widgets are already gone
            pass

    # -- drawing -----------------------------------------------------------------------------
    def _draw_text(self, state) -> None:
        self._draw_title(state)
        snap, model = state.snapshot, state.model or {}
        summary = self.query_one("#bayes-summary", Static)
        hmc = self.query_one("#hmc")
        cols = self.query_one("#bayes-cols")
        if not has_bayes(model, snap):
            summary.display, hmc.display, cols.display = True, False, False
            summary.update(nothing_bayesian_text(model))
            self._summary_lines = 3
            return
        layers, sampler = bayes_info(model, snap)
        b = snap.bayes if snap is not None else None
        optimizer_state = snap.optimizer_state if snap is not None else None
        hmc_state = optimizer_state if sampler and optimizer_state else None
        # Variational inference: the ELBO and the MC loss (a sampler has neither).
        summary.display = bool(layers) or hmc_state is None
        if summary.display:
            text = elbo_lines(snap, model) if layers else not_sampled_text(snap)
            summary.update(text)
            width = max(self.app.size.width - 4, 20)
            self._summary_lines = sum(max(1, -(-len(line) // width)) for line in text.plain.split("\n"))
        hmc.display = hmc_state is not None
        hmc.set_class(not summary.display, "-first")
        if hmc_state is not None:
            self.query_one("#hmc-title", Static).update(
                f"Hamiltonian Monte Carlo, step {hmc_state.get('step', '-')}")
            self.query_one("#hmc-state", Static).update(hmc_lines(hmc_state))
        cols.display = b is not None
        if b is None:
            return
        history = state.history
        self.query_one("#sigma-title", Static).update(
            "Posterior σ per layer" + (", from the chain" if sampler else ""))
        self.query_one("#sigma-table", Static).update(
            Group(sigma_table(b, history), Text(""), sigma_caption(sampler)) if b.posterior_sigma
            else sigma_missing_text(sampler, hmc_state))
        table = noise_table(b, history)
        self.query_one("#noise-title").display = self.query_one("#noise-table").display = table is not None
        if table is not None:
            self.query_one("#noise-table", Static).update(Group(table, Text(""), noise_caption(b, model)))

    def _draw_title(self, state) -> None:
        snap, model = state.snapshot, state.model or {}
        _, sampler = bayes_info(model, snap)
        lr_name = "ε" if sampler else "lr"
        if self.lr_request is not None and snap is not None and snap.step > self.lr_request[1]:
            self.lr_request = None        # a step has run with it: the snapshot's lr is the new one
        text = Text()
        text.append("Bayesian  ", style="bold magenta")
        text.append(model.get("optimizer", ""), style="bold")
        if snap is not None:
            text.append("  step size ε " if sampler else "  lr ")
            text.append(num(snap.lr))
            text.append(f"   step {snap.step}   {state.state}", style="dim")
        if self.lr_request is not None:
            factor = self.lr_request[0]
            text.append(f"\n→ {lr_name} ", style="bold yellow")
            text.append(f"×{factor:g}" if factor >= 1 else f"÷{1 / factor:g}", style="bold yellow")
            if snap is not None:
                text.append(f" = {num(snap.lr * factor)}", style="bold yellow")
            text.append(" from the next step" + (" (paused: press n or space)" if state.state == "paused"
                                                   else ""), style="yellow")
        if has_bayes(model, snap):
            text.append(f"\nkeys: [ halve {lr_name} · ] double {lr_name}"
                        + (" (the step size is the lr)" if sampler else "") + " · escape back", style="dim")
        else:
            text.append("\nkeys: escape back", style="dim")
        self.query_one("#bayes-title", Static).update(text)

    def _draw_plots(self, state) -> None:
        snap, model = state.snapshot, state.model or {}
        history = state.history
        layers, sampler = bayes_info(model, snap)
        b = snap.bayes if snap is not None else None
        elbo_plot = self.query_one(ElboPlot)
        elbo_plot.display = "expected_log_likelihood" in history and "kl" in history
        if elbo_plot.display:
            elbo_plot.display = elbo_plot.show(history)
        caption = self.query_one("#elbo-caption", Static)
        caption.display = elbo_plot.display
        if caption.display:
            caption.update(elbo_caption())
        accept_plot = self.query_one(AcceptancePlot)
        accept_plot.display = sampler and "hmc.acceptance_rate" in history
        if accept_plot.display:
            accept_plot.display = accept_plot.show(history)
        sigma_plot = self.query_one(SigmaPlot)
        names = list(b.posterior_sigma) if b is not None else layers
        sigma_plot.display = bool(names)
        if sigma_plot.display:
            sigma_plot.display = sigma_plot.show(history, names, sampler)
        # nothing to plot yet: the tables take the whole width
        plotted = elbo_plot.display or accept_plot.display or sigma_plot.display
        self.query_one("#bayes-plots").display = plotted
        self.query_one("#bayes-cols").set_class(not plotted, "-no-plots")
        self._size_plots()
