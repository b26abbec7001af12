"""What the Bayesian view and the layer inspector show about Bayesian layers and samplers: the
ELBO's two terms, the posterior σ per layer and its trend, the gradient noise per parameter, the
Monte Carlo estimate of the loss with its error bar, the state of Hamiltonian Monte Carlo, and
plots of the ELBO's terms, of HMC's acceptance rate and of σ over the steps.

The numbers come from the snapshot's `bayes` (calcml.debug.bayesprobe.BayesStats) and, for HMC,
its `optimizer_state`; the trends from the history (`<layer>.posterior_sigma` on detail steps,
`<param>.gradient_noise` on noise steps: NaN in between, carried forward here).
"""
from __future__ import annotations

import math

import numpy as np
from rich.table import Table
from rich.text import Text

from ..format import as_float, num, pct
from .curvature import LogSeriesPlot, carried_forward
from .histogram import first_last, sparkline
from .plots import OFF_SCALE, GuardedPlot, fit_exponent, real_value, scaled, thin

NOISY = 1.0              # gradient noise above this: one draw's gradient is mostly noise
STEADY = 0.02            # a σ that moved less than this (relative) since its first value is steady
SPARK_WIDTH = 12
LAYER_COLOURS = ("cyan", "orange", "green", "magenta", "blue", "red")   # plotext names (its "yellow" is blue)


def bayes_info(model: dict | None, snapshot) -> tuple:
    """(Bayesian layer names, whether the optimiser is a sampler) from the model info, or from
    the snapshot when the model info does not say."""
    model = model or {}
    layers = list(model.get("bayes_layers") or [])
    sampler = bool(model.get("sampler"))
    b = snapshot.bayes if snapshot is not None else None
    if not layers and b is not None and not sampler and not _is_sampler_state(snapshot):
        layers = list(b.posterior_sigma)
    sampler = sampler or _is_sampler_state(snapshot)
    return layers, sampler


def _is_sampler_state(snapshot) -> bool:
    state = snapshot.optimizer_state if snapshot is not None else None
    return bool(state) and "acceptance_rate" in state


def has_bayes(model: dict | None, snapshot) -> bool:
    layers, sampler = bayes_info(model, snapshot)
    return bool(layers or sampler or (snapshot is not None and snapshot.bayes is not None))


def nothing_bayesian_text(model: dict | None) -> Text:
    optimizer = (model or {}).get("optimizer") or "its optimiser"
    text = Text()
    text.append("Nothing Bayesian in this model: ", style="bold yellow")
    text.append(f"it has no Bayesian layers (cm.nn.BayesLinear) and {optimizer} is not a sampler "
                "(cm.bayes.HMC), so there is no posterior to show. ")
    text.append("For examples: sample_models/bayes_regression.py (variational inference, the ELBO) "
                "and sample_models/hmc_logreg.py (Hamiltonian Monte Carlo).", style="dim")
    return text


def not_sampled_text(snapshot) -> Text:
    """A sampler before its first step."""
    text = Text("No samples yet: ", style="yellow")
    text.append("the sampler's state and the chain's spread come with its steps"
                + (" (press n to take the first one)." if snapshot is None or snapshot.step == 0 else "."))
    return text


# -- variational inference: the ELBO and the Monte Carlo estimate ----------------------------------

def elbo_lines(snapshot, model: dict | None) -> Text:
    """The latest ELBO = E_q[log p] − KL with its values, what the terms mean, and the Monte
    Carlo estimate of the loss with its error bar (or why some of it is missing)."""
    model = model or {}
    b = snapshot.bayes if snapshot is not None else None
    if b is None:
        text = Text("No Bayesian numbers yet: ", style="yellow")
        text.append("the ELBO's terms and the posterior σ come with every step"
                    + (" (press n to take the first one)." if snapshot is None or snapshot.step == 0 else "."))
        return text
    text = Text()
    if b.elbo is None:
        text.append("The loss is not an ELBO", style="bold yellow")
        text.append(", so its two terms are unknown: build it with cm.bayes.elbo(...) or "
                    "cm.bayes.elbo_from_outputs(...), whose .loss is −ELBO/n, to see them here.")
    else:
        text.append("ELBO = E_q[log p(y|X,θ)] − KL(q‖prior)", style="bold")
        text.append(f"   step {b.step}, this step's estimate", style="dim")
        text.append("\n     = ")
        text.append(num(b.expected_log_likelihood), style="bold cyan")
        text.append(" − ")
        text.append(num(b.kl), style="bold red")
        text.append(" = ")
        text.append(num(b.elbo), style="bold")
        n = _n_data(b.elbo, snapshot.loss)
        if n is not None:
            text.append(f"   loss = −ELBO/n = {num(snapshot.loss)}, n = {n}", style="dim")
    text.append("\n")
    text.append_text(mc_line(b, model))
    return text


def elbo_caption() -> Text:
    text = Text()
    text.append("E_q[log p]", style="cyan")
    text.append(": how well weights drawn from q fit the data (higher is better). ", style="dim")
    text.append("KL", style="red")
    text.append(": how far q is from the prior, the price of that fit. Training maximises their "
                "difference, the ELBO.", style="dim")
    return text


def _n_data(elbo, loss) -> int | None:
    """n when the loss is −ELBO/n for a whole number n (what cm.bayes.elbo's .loss is)."""
    if elbo is None or loss is None or not loss or not math.isfinite(loss) or not math.isfinite(elbo):
        return None
    n = -elbo / loss
    if math.isfinite(n) and n >= 1 and abs(n - round(n)) <= 1e-6 * n:
        return int(round(n))
    return None


def mc_line(b, model: dict | None) -> Text:
    """The loss averaged over the extra weight draws ± its standard error, and when."""
    model = model or {}
    text = Text()
    if b.mc_loss is not None and b.noise_step is not None:
        text.append("MC loss ")
        text.append(f"{num(b.mc_loss)} ± {num(b.mc_loss_se)}", style="bold")
        text.append(f"   mean ± standard error of {b.mc_samples} weight draws, step {b.noise_step}")
        if b.mc_loss_se is not None and b.mc_samples > 1:
            text.append(f"\none draw's loss scatters by ±{num(b.mc_loss_se * math.sqrt(b.mc_samples))} "
                        f"(= s.e.·√{b.mc_samples}): the noise in the loss curve", style="dim")
        return text
    note, every = model.get("bayes_note"), model.get("noise_every")
    if note:
        return Text(note[0].upper() + note[1:] + ".", style="yellow")
    if every == 0:
        return Text("The MC loss and the gradient noise are off for this run (noise_every = 0).", style="dim")
    samples = model.get("noise_samples")
    when = f"at step 1, then every {every} steps" if every else "every few steps"
    return Text(f"The MC loss and the gradient noise are measured {when}"
                + (f", from {samples} extra weight draws" if samples else "") + ".", style="dim")


# -- posterior σ and gradient noise ---------------------------------------------------------------

def sigma_rows(b, history: dict) -> list:
    """Per layer: (layer, σ now, (first step, first σ) or None, σ now / first σ or None, trend)."""
    rows = []
    for layer, sigma in (b.posterior_sigma if b is not None else {}).items():
        name = f"{layer}.posterior_sigma"
        first = first_last(history, name)
        start = (first[0], first[1]) if first is not None else None
        ratio = sigma / start[1] if start is not None and sigma is not None and start[1] > 0 else None
        values = history.get(name)
        trend = sparkline(carried_forward(values), SPARK_WIDTH) if values is not None else ""
        rows.append((layer, sigma, start, ratio, trend))
    return rows


def change_text(ratio) -> Text:
    if ratio is None or not math.isfinite(as_float(ratio)):
        return Text("-", style="dim")
    if abs(ratio - 1) < STEADY:
        return Text("steady", style="dim")
    if ratio > 1:
        return Text(f"×{num(ratio)} ↑", style="yellow")
    return Text(f"×{num(ratio)} ↓", style="cyan")


def sigma_table(b, history: dict) -> Table | Text:
    rows = sigma_rows(b, history)
    if not rows:
        return Text("No posterior σ yet.", style="dim")
    starts = {row[2][0] for row in rows if row[2] is not None}
    first_header = f"at step {starts.pop()}" if len(starts) == 1 else "first"
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
    for header in ("layer", "σ now", first_header, "change", "trend"):
        table.add_column(header, justify="right" if header in ("σ now", first_header) else "left", no_wrap=True)
    for layer, sigma, start, ratio, trend in rows:
        first = "-" if start is None else (num(start[1]) if first_header != "first"
                                           else f"{num(start[1])} (step {start[0]})")
        table.add_row(Text(layer, style="bold"), Text(num(sigma), style="bold"), Text(first), change_text(ratio),
                      Text(trend, style="green"))
    return table


def sigma_caption(sampler: bool) -> Text:
    if sampler:
        return Text("σ: the standard deviation of the layer's parameters over the chain's kept states "
                    "(after burn-in), the posterior's spread: how uncertain each weight still is.", style="dim")
    return Text("σ: the mean posterior standard deviation of the layer's weights, softplus(ρ). The KL pulls "
                "it towards the prior's σ; the data hold it small where they constrain the weights, so a "
                "layer whose σ stays small (or shrinks) is one the data pin down, and one whose σ grows "
                "towards the prior's is one they barely touch.", style="dim")


def sigma_missing_text(sampler: bool, state: dict | None) -> Text:
    if sampler:
        kept = (state or {}).get("kept")
        return Text("The chain's spread per layer appears once 2 states are kept, after burn-in"
                    + (f" ({kept} kept so far)." if kept is not None else "."), style="dim")
    return Text("No posterior σ yet: it is measured at the first step.", style="dim")


def noise_table(b, history: dict) -> Table | None:
    """Per parameter: ‖std g‖/‖mean g‖ over the extra draws, what it means, and its trend."""
    noise = b.gradient_noise if b is not None else {}
    if not noise:
        return None
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
    for header in ("param", "noise", "", "trend"):
        table.add_column(header, justify="right" if header == "noise" else "left", no_wrap=True)
    for name, ratio in noise.items():
        noisy = ratio is not None and not ratio <= NOISY
        words = Text("mostly noise", style="yellow") if noisy else Text("mostly signal", style="green")
        values = history.get(f"{name}.gradient_noise")
        trend = sparkline(carried_forward(values), SPARK_WIDTH) if values is not None else ""
        table.add_row(Text(name), Text(num(ratio), style="bold yellow" if noisy else "bold"), words,
                      Text(trend, style="green"))
    return table


def noise_caption(b, model: dict | None) -> Text:
    every = (model or {}).get("noise_every")
    text = Text(f"noise = ‖std g‖/‖mean g‖ over the {b.mc_samples} gradients of fresh weight draws at step "
                f"{b.noise_step}" + (f" (measured every {every} steps)" if every else "") + ": how much one "
                "draw's gradient differs from the average one. Above 1 (yellow): one draw's gradient is "
                "mostly noise, so single steps wander and only their average over many steps goes downhill; "
                "k draws per step (cm.bayes.elbo(..., samples=k)) divide it by √k.", style="dim")
    return text


def layer_bayes_lines(layer, snapshot, histograms=None, hist_step=None) -> Table | Text | None:
    """For the layer inspector: the layer's posterior σ (mean, and min–max over its weights from
    the latest histogram of ρ when there is one) and its parameters' gradient noise. None when the
    layer has neither."""
    b = snapshot.bayes if snapshot is not None else None
    if b is None:
        return (Text("Its posterior σ and gradient noise are measured from the first step on.", style="dim")
                if layer.type == "BayesLinear" else None)
    sigma = b.posterior_sigma.get(layer.name)
    noise = [(short, b.gradient_noise[p.name]) for short, p in layer.params.items() if p.name in b.gradient_noise]
    if sigma is None and not noise and layer.type != "BayesLinear":
        return None
    grid = Table.grid()
    line = Text("posterior σ ")
    if sigma is None:
        line.append("-", style="bold")
        line.append("   not measured yet", style="dim")
    else:
        line.append(num(sigma), style="bold")
        sampler = _is_sampler_state(snapshot)
        line.append(" the chain's spread, mean over its parameters" if sampler else " mean over its weights",
                    style="dim")
        line.append(f" (step {b.step})", style="dim")
        spread = sigma_range(layer, histograms)
        if spread is not None:
            lo, hi = spread
            line.append("   min–max ")
            line.append(f"{num(lo)} – {num(hi)}", style="bold")
            if hist_step is not None:
                line.append(f" (step {hist_step})", style="dim")
    grid.add_row(line)
    if noise:
        table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
        table.add_column("param", no_wrap=True)
        table.add_column("gradient noise", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        for short, ratio in noise:
            noisy = ratio is not None and not ratio <= NOISY
            table.add_row(short, Text(num(ratio), style="bold yellow" if noisy else "bold"),
                          Text("mostly noise", style="yellow") if noisy else Text("mostly signal", style="green"))
        grid.add_row(table)
        grid.add_row(Text(f"‖std g‖/‖mean g‖ over {b.mc_samples} weight draws at step {b.noise_step}: above 1, "
                          "one draw's gradient is mostly noise. v: the Bayesian view.", style="dim"))
    else:
        grid.add_row(Text("v: the Bayesian view, with σ over the steps.", style="dim"))
    return grid


def sigma_range(layer, histograms) -> tuple | None:
    """(min σ, max σ) over the layer's weights from the histogram of weight_rho: its edges run
    from the smallest ρ to the largest, and σ = softplus(ρ) keeps their order. None without one,
    or when every ρ is the same (the histogram's edges are then ±½ around it)."""
    rho = layer.params.get("weight_rho")
    hist = (histograms or {}).get(f"{rho.name}.weight_hist") if rho is not None else None
    if hist is None:
        return None
    counts, edges = hist
    counts = np.asarray(counts)
    if np.count_nonzero(counts) < 2 or len(edges) < 2:
        return None
    lo, hi = float(edges[0]), float(edges[-1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return float(np.logaddexp(0.0, lo)), float(np.logaddexp(0.0, hi))


# -- Hamiltonian Monte Carlo ----------------------------------------------------------------------

def hmc_lines(state: dict) -> Text:
    """The sampler's report on its last step: the message, the acceptance rate, |ΔH|, the step
    size and the number of kept samples."""
    text = Text()
    accepted = state.get("accepted")
    rate = state.get("acceptance_rate")
    low = isinstance(rate, (int, float)) and rate < 0.5 and (state.get("step") or 0) >= 20
    text.append(str(state.get("message", "")), style="green" if accepted and not low else "yellow")
    text.append("\nacceptance rate ")
    text.append(pct(rate), style="bold yellow" if low else "bold")
    text.append("   |ΔH| ")
    error = state.get("hamiltonian_error")
    big = isinstance(error, (int, float)) and not error <= 1
    text.append(num(error), style="bold yellow" if big else "bold")
    text.append("   kept samples ")
    text.append(str(state.get("kept", "-")), style="bold")
    text.append("\nstep size ε ")
    text.append(num(state.get("step_size")), style="bold")
    text.append(f" × {state.get('leapfrog_steps', '-')} leapfrog steps   U = −log p(θ|D) ")
    text.append(num(state.get("potential")), style="bold")
    text.append("\n|ΔH| near 0: ε could grow; ≫ 1: proposals are rejected, halve ε with [. Leapfrog is "
                "stable while ε < 2/√λ_max.", style="dim")
    return text


# -- plots ----------------------------------------------------------------------------------------

def robust_range(values: np.ndarray) -> tuple | None:
    """(low, high, clipped): the values' range, or, when a few first values lie far outside the
    rest (the first steps of training), the range of the values not far outside the rest, so
    that it is not squashed flat (clipped is then True: the far-off points run off the edge)."""
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    if y.size == 0:
        return None
    lo, hi = float(y.min()), float(y.max())
    if y.size >= 10:
        rest = y[max(1, y.size // 20):]
        rlo, rhi = float(rest.min()), float(rest.max())
        span = rhi - rlo
        if span > 0 and hi - lo > 3 * span:
            near = y[(y >= rlo - span) & (y <= rhi + span)]   # the first points not far off stay in
            return float(near.min()), float(near.max()), True
    return lo, hi, False


def fit_title(titles, width: int) -> str:
    """The first of `titles` that fits a plot `width` columns wide (plotext drops a longer one)."""
    for title in titles:
        if len(title) <= width - 2:
            return title
    return titles[-1][:max(width - 3, 0)] + "…" if width > 3 else ""


def linear_ticks(lo: float, hi: float, count: int = 4, exponent: int = 0) -> tuple:
    """(positions, labels) from lo to hi; on a plot drawn scaled by 2⁻ᵉ (plots.fit_exponent) the
    labels are the real values."""
    positions = [lo] if hi <= lo else list(np.linspace(lo, hi, count))
    return positions, [num(real_value(t, exponent), 4) for t in positions]


class FittedTitle:
    """A plot whose title is chosen when it is drawn, the longest of a few that fits its width
    (plotext leaves out a title wider than the plot)."""

    titles: tuple = ()

    def render(self):
        self.plt.title(fit_title(self.titles, self.size.width) if self.titles else "")
        return super().render()


class TwoAxisPlot(FittedTitle, GuardedPlot):
    """One or two history series over the steps on linear scales, the first on the left axis,
    the second on the right one (each with its own scale); the title names the colours."""

    def draw(self, history: dict, titles: tuple, left: tuple, right: tuple | None = None,
             left_limits: tuple | None = None) -> bool:
        """`titles`: the title, then shorter ones for narrow plots; `left`, `right`: (values,
        colour); `left_limits` fixes the left axis (e.g. 0 to 1). Returns whether anything was drawn."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        steps = history.get("step")
        drawn, clipped = False, False
        if steps is not None and len(steps):
            width = max((self.size.width or self.app.size.width) - 14, 10)
            for side, series in (("left", left), ("right", right)):
                if series is None:
                    continue
                values, colour = series
                values = np.asarray(values, dtype=float)
                ok = np.isfinite(values)
                if not ok.any():
                    continue
                x, y = thin(steps[ok], values[ok], width)
                fixed = side == "left" and left_limits is not None
                exponent = 0 if fixed else fit_exponent(y)   # 1e308s are drawn scaled, ticks real
                y = scaled(y, exponent)
                limits = left_limits if fixed else robust_range(y)
                lo, hi = limits[0], limits[1]
                clipped = clipped or (len(limits) > 2 and limits[2])
                pad = max((hi - lo) * 0.08, 1e-9 + abs(hi) * 0.01)
                reach = OFF_SCALE * (hi - lo + 2 * pad)   # points off the scale: just off it
                y = np.clip(y, lo - pad - reach, hi + pad + reach)
                plt.plot(x.tolist(), y.tolist(), marker="braille", color=colour, yside=side)
                plt.ylim(lo - pad, hi + pad, yside=side)
                plt.yticks(*linear_ticks(lo, hi, 5 if limits == (0.0, 1.0) else 4, exponent), yside=side)
                drawn = True
        if clipped:   # the first, far-off points run off the plot's edge: say so where it fits
            titles = [t + " (first steps off scale)" for t in titles] + list(titles)
        self.titles = tuple(titles)
        plt.xlabel("step")
        self.refresh()
        return drawn


class ElboPlot(TwoAxisPlot):
    """The ELBO's two terms over the steps, each on its own scale: E_q[log p] rises as the fit
    improves, the KL shows what moving q away from the prior costs."""

    def show(self, history: dict) -> bool:
        ell, kl = history.get("expected_log_likelihood"), history.get("kl")
        if ell is None or kl is None:
            return self.draw(history, (), (np.array([]), "cyan"))
        return self.draw(history, ("ELBO terms: E_q[log p] (cyan, left axis) · KL (red, right axis)",
                                   "E_q[log p] cyan, left axis · KL red, right axis",
                                   "E_q[log p] cyan, left · KL red, right"),
                         (ell, "cyan"), (kl, "red"))


class AcceptancePlot(TwoAxisPlot):
    """HMC: the acceptance rate so far (0 to 1) and the potential U = −log p(θ|D) of the chain's
    state, which wanders around its typical value rather than falling to a minimum."""

    def show(self, history: dict) -> bool:
        rate = history.get("hmc.acceptance_rate")
        if rate is None:
            return self.draw(history, (), (np.array([]), "cyan"))
        potential = history.get("hmc.potential")
        return self.draw(history, ("acceptance rate (cyan, left axis, 0–1) · U = −log p(θ|D) (red, right axis)",
                                   "acceptance rate cyan, left · U = −log p(θ|D) red, right",
                                   "acceptance cyan, left · U red, right"),
                         (rate, "cyan"), (potential, "red") if potential is not None else None,
                         left_limits=(0.0, 1.0))


def sigma_series(history: dict, layers: list) -> list:
    """(layer, colour, σ values carried forward) for the layers with a σ series."""
    out = []
    for layer in layers:
        values = history.get(f"{layer}.posterior_sigma")
        if values is not None and np.isfinite(values).any():
            out.append((layer, LAYER_COLOURS[len(out) % len(LAYER_COLOURS)], carried_forward(values)))
        if len(out) == len(LAYER_COLOURS):
            break
    return out


class SigmaPlot(FittedTitle, LogSeriesPlot):
    """The posterior σ of each layer over the steps on a log scale (from the chain, for HMC)."""

    def show(self, history: dict, layers: list, sampler: bool = False) -> bool:
        series = sigma_series(history, layers)
        measured = sum(int(np.isfinite(history.get(f"{layer}.posterior_sigma")).sum()) for layer, _, _ in series)
        if not series or measured < 2 * len(series):
            self.titles = ()
            return self.draw(history, "", [])
        names = " · ".join(f"{layer} {colour}" for layer, colour, _ in series)
        what = "the chain's σ" if sampler else "posterior σ"
        self.titles = (f"{what} per layer, log scale: {names}", f"σ per layer, log: {names}")
        return self.draw(history, self.titles[0], [(values, colour) for _, colour, values in series])
