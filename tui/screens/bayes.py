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

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from ..text_bayes import (bayes_info, bayes_title, elbo_caption, elbo_lines, has_bayes, hmc_lines, noise_caption,
                          noise_table, not_sampled_text, nothing_bayesian_text, sigma_caption, sigma_missing_text,
                          sigma_table)
from ..widgets.acceptance_plot import AcceptancePlot
from ..widgets.elbo_plot import ElboPlot
from ..widgets.sigma_plot import SigmaPlot
from .footer import SteadyFooter
from .liveview import LiveViewScreen

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


class BayesScreen(LiveViewScreen):
    """The ELBO's terms over the steps, posterior σ per layer, gradient noise, the MC loss; HMC's state."""

    BINDINGS = LiveViewScreen.BINDINGS + [
        Binding("v", "dismiss", "back", show=False),
        Binding("h", "app.curvature", "curv", show=False),   # works, but leaves the footer room at 80 columns
        Binding("d", "app.data_view", "data", show=False),
    ]
    DEFAULT_CSS = CSS
    TITLE_ID = "bayes-title"
    PLOT_ROWS = (12, 30)
    REDRAW_TEXT_ON = frozenset({"snapshot", "model", "state", "history"})   # the tables' trends
    _summary_lines = 0

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
        yield SteadyFooter()

    def plots(self) -> list:
        return [self.query_one(ElboPlot), self.query_one(AcceptancePlot), self.query_one(SigmaPlot)]

    def rows_above(self) -> int:
        summary = self.query_one("#bayes-summary").display and self._summary_lines or 0
        caption = 4 if self.query_one("#elbo-caption").display else 0
        return 3 + summary + 1 + 2 + caption + (7 if self.query_one("#hmc").display else 0)   # title, footer

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
        keys = (f"keys: [ halve {lr_name} · ] double {lr_name}"
                + (" (the step size is the lr)" if sampler else "") + " · escape back"
                if has_bayes(model, snap) else "keys: escape back")
        super()._draw_title(state, lr_name, keys)

    def title_head(self, state) -> Text:
        return bayes_title(state)

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
