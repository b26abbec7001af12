"""What the regularisation view says: the regulariser in use and what it does, the change asked
for, and per weight its histogram now against step 0, its norm and sparsity over the steps, and
its data-loss and penalty gradients side by side."""
from __future__ import annotations

import math

from rich.text import Text

from .format import num, pct
from .text_histogram import histogram_lines
from .widgets.common import first_last, sparkline

SPARSE_BELOW = 1e-3            # the session's sparsity threshold (Thresholds.sparsity_threshold)

EXPLAIN = {
    "none": ("no regulariser", "the loss is the data loss alone: nothing pulls the weights towards zero."),
    "L2": ("L2: penalty λΣθ², gradient 2λθ",
           "weight decay: each weight is pulled towards 0 in proportion to its size, so weights shrink "
           "but stay non-zero."),
    "L1": ("L1: penalty λΣ|θ|, gradient λ·sign θ",
           "the same push for every weight whatever its size, so it drives small weights to exactly zero "
           "(a sparse model)."),
}


def title_text(state, in_use: tuple, requested: tuple | None, message: str | None) -> Text:
    """The view's head: the regulariser in use (`in_use`: kind, λ), its penalty and what it does;
    the change asked for and not yet in a snapshot (`requested`); a note; the keys."""
    snap = state.snapshot
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
    if requested is not None:
        r_kind, r_lam = requested
        text.append("\n→ ", style="bold yellow")
        text.append(f"{r_kind}" + (f" λ = {num(r_lam)}" if r_kind != "none" else ""), style="bold yellow")
        if state.state in ("finished", "stopped"):
            text.append(" is set, but training has ended: no more steps will use it", style="yellow")
        else:
            text.append(" applies from the next step" +
                        (" (paused: press n or space)" if state.state == "paused" else ""), style="yellow")
    if message:
        text.append("\n" + message, style="yellow")
    text.append("\nkeys: 0 none · 1 L1 · 2 L2 · + double λ · - halve λ · escape back", style="dim")
    return text


def param_lines(layer_name: str, param_name: str, stats, history: dict, now_hist, first_hist, width: int) -> list:
    """The lines of one weight's panel, `width` columns wide: its name, shape, ‖θ‖ and sparsity;
    its histogram now (`now_hist`: counts, edges, step) against step 0's (`first_hist`: counts,
    edges); ‖θ‖ and the sparsity over the steps; the data-loss and penalty gradients side by side."""
    p = stats
    if p is None:
        return [Text(param_name)]
    out = []
    head = Text()
    head.append(p.name, style="bold")
    head.append(f"  {'×'.join(str(n) for n in p.shape)}", style="dim")
    if layer_name != p.name.rpartition(".")[0] and layer_name != "model":
        head.append(f"  layer {layer_name}", style="dim")
    head.append("   ‖θ‖ ")
    head.append(num(p.weight_norm), style="bold")
    head.append("   sparsity ")
    head.append(pct(p.sparsity), style="bold")
    head.append(f" (|θ| < {SPARSE_BELOW:g})", style="dim")
    out.append(head)

    series = []
    if first_hist is not None:
        series.append(("step 0", *first_hist, "blue"))
    if now_hist is not None:
        counts, edges, step = now_hist
        series.append((f"step {step}", counts, edges, "cyan"))
    out += [Text("  ") + line for line in histogram_lines(series, width - 2, rows=2)]

    label_width = 11
    spark_width = max(min(width - label_width - 40, 40), 8)
    for name, label, fmt, now in ((f"{p.name}.weight_norm", "‖θ‖", num, p.weight_norm),
                                  (f"{p.name}.sparsity", "sparsity", pct, p.sparsity)):
        values = history.get(name)
        line = Text(f"  {label:<{label_width - 2}}", style="dim")
        ends = first_last(history, name)
        if values is None or ends is None:
            line.append("no history yet", style="dim")
        else:
            # measured every few steps: the last value carried between (no holes), and the end
            # is the number the heading shows (the history's last point may be a mean of several)
            line.append(sparkline(values, spark_width, carry=True), style="green")
            first_step, first, last = ends
            last = now if now is not None else last
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
