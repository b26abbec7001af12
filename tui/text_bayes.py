"""What the Bayesian view and the layer inspector say about Bayesian layers and samplers: the
ELBO's two terms, the posterior σ per layer and its trend, the gradient noise per parameter, the
Monte Carlo estimate of the loss with its error bar, and the state of Hamiltonian Monte Carlo (the
plots of the ELBO's terms, of HMC's acceptance rate and of σ over the steps are widgets:
widgets/elbo_plot.py, acceptance_plot.py, sigma_plot.py).

The numbers come from the snapshot's `bayes` (calcml.debug.bayesprobe.BayesStats) and, for HMC,
its `optimizer_state`; the trends from the history (`<layer>.posterior_sigma` on detail steps,
`<param>.gradient_noise` on noise steps: NaN in between, carried forward here).
"""
from __future__ import annotations

import math

import numpy as np
from rich.table import Table
from rich.text import Text

from .format import as_float, num, pct, view_title
from .widgets.common import first_last, sparkline

NOISY = 1.0              # gradient noise above this: one draw's gradient is mostly noise
STEADY = 0.02            # a σ that moved less than this (relative) since its first value is steady
SPARK_WIDTH = 12


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
        trend = sparkline(values, SPARK_WIDTH, carry=True) if values is not None else ""
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
        trend = sparkline(values, SPARK_WIDTH, carry=True) if values is not None else ""
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


def bayes_title(state) -> Text:
    """The Bayesian view's head line: the optimiser, the lr (a sampler's step size ε), the step and
    where training stands."""
    model = state.model or {}
    _, sampler = bayes_info(model, state.snapshot)
    return view_title("Bayesian", model.get("optimizer", ""), state, "step size ε" if sampler else "lr")
