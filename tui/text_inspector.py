"""What the layer inspector says: the chain rule from the loss down to one layer, factor by
factor, with the running product and in words; the layer's parameters' gradients (data loss and
penalty) and their curvature; the titles of its panels.

Backpropagation multiplies one factor per layer between the loss and the weights:

    ∂L/∂w_k = (∂L/∂y)·(∂y/∂a_L)···(∂a_{k+1}/∂a_k)·(∂a_k/∂w_k)

The session measures, per layer, ‖∂L/∂output‖ and ‖∂L/∂input‖; their ratio is the size of that
layer's factor (see screens/inspector.py). Where a layer's input also goes elsewhere (a residual
shortcut, a second layer reading it) that factor is the layer's own share, and a row of its own
joins the other paths' gradient at the input: the product is again the gradient measured there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from calcml import nn
from calcml.debug.backend import BESIDE
from calcml.debug.probes import DropoutProbe, SoftmaxProbe
from calcml.nn.layers import LAYER_OPS
from calcml.ops import ACTIVATION_OPS

from .format import num
from .text_curvature import edge_context, param_table

FORMULA = "∂L/∂w_k = (∂L/∂y)·(∂y/∂a_L)···(∂a_{k+1}/∂a_k)·(∂a_k/∂w_k)"
SHRINKS, GROWS = 0.5, 2.0        # factors outside these are highlighted
HEALTHY_UPDATE = 1e-3
SAME_AFTER_ALL_REDUCE = 1e-9   # relative: all-reduced gradients agree to rounding
JOIN_NOTE = ("the input also reaches the loss another way (a shortcut, another layer): "
             "their gradients add to this one here")

# What each kind of layer multiplies the gradient by (by layer type: the note of the op it
# computes, or for a layer built from several ops its class's `factor_note`; a PyTorch layer of
# the same name gets the same note), and each activation's local derivative by name (by kind):
# from the derivative table.
FACTOR_NOTES = ({name: op.note for name, op in LAYER_OPS.items() if op.note}
                | {cls.__name__: cls.factor_note for cls in vars(nn).values()
                   if isinstance(cls, type) and getattr(cls, "factor_note", "")})
DERIVATIVE_NAMES = ({op.name: op.activation.derivative for op in ACTIVATION_OPS}
                    | {"softmax": SoftmaxProbe.DERIVATIVE, "dropout": DropoutProbe.DERIVATIVE})


@dataclass(frozen=True)
class ChainLink:
    """One factor of the chain-rule product and the gradient norm after multiplying by it."""
    layer: str | None      # None for the loss
    type: str              # the layer's type, 'loss', 'weight' for the last factor ∂a_k/∂W_k, or
                           # 'join' for the other paths' gradient added at a fork's input
    formula: str           # the factor as written in the product
    note: str              # what the factor is for this kind of layer
    factor: float | None   # its size: ‖∂L/∂in‖/‖∂L/∂out‖ (for the loss: ‖∂L/∂y‖ itself)
    product: float | None  # the running product: the gradient norm after this factor
    of: str                # what `product` is the norm of
    activation: str | None = None   # an elementwise activation's op, when its mean f' is measured


def factor_note(layer) -> str:
    """The factor in words; for an activation also its measured mean local derivative."""
    note = FACTOR_NOTES.get(layer.type, "∂out/∂in")
    if layer.mean_local_derivative is not None:
        note += f", mean {num(layer.mean_local_derivative, 2)}"
    return note


def layer_weight(layer):
    """The layer's weight (its first parameter when it has none named so), or None."""
    return layer.params.get("weight") or next(iter(layer.params.values()), None)


def chain_links(layers, name: str) -> list:
    """The factors from the loss down to layer `name` (forward-order `layers`, LayerStats).

    First ‖∂L/∂y‖ (the loss's gradient at the output), then for each layer from the last down to
    the one after `name` its factor ‖∂L/∂in‖/‖∂L/∂out‖ and the running product, which is
    ‖∂L/∂a_k‖ by the time it reaches `name`. After a fork's factor (its own share) comes the join
    of the other paths into its input. Last, for a layer with weights, ∂a_k/∂W_k and the weight
    gradient ‖∂L/∂W_k‖; for one without, its own factor (what it passes further down)."""
    # Off the chain: a layer measured beside it, and one whose output was not captured this step
    # (it did not run, as a MultiheadAttention's out_proj, whose weights F.linear reads directly,
    # or its output is not one tensor).
    ran = any(layer.output_shape is not None for layer in layers)
    layers = [layer for layer in layers if layer.name == name or (
        layer.type != BESIDE and (layer.output_shape is not None or not ran))]
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
                               f"‖∂L/∂a_{layers[j - 1].name}‖", _elementwise(layer)))
        product = _join(links, layer, layers[j - 1].name, product)
    chosen = layers[k]
    w = layer_weight(chosen)
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
                               factor, product, f"‖∂L/∂a_{below}‖", _elementwise(chosen)))
        _join(links, chosen, below, product)
    return links


def _join(links: list, layer, below: str, product):
    """After a fork's factor, the other paths' gradient joining at its input: the link, and the
    product after it, which is the measured ‖∂L/∂input‖ over every path (= the product × the
    join's size, where the layer's own share was measured)."""
    whole = layer.grad_in_total_norm
    if whole is None:
        return product
    links.append(ChainLink(layer.name, "join", "+ other paths", JOIN_NOTE, layer.other_paths_ratio,
                           whole, f"‖∂L/∂a_{below}‖"))
    return whole


def _elementwise(layer) -> str | None:
    """The layer's activation when it acts entry by entry and its mean f' was measured."""
    if layer.activation is None or layer.activation == "softmax" or layer.mean_local_derivative is None:
        return None
    return layer.activation


def mean_and_size(activations) -> str:
    """Why an activation's row shows two different numbers: its mean f' and its size."""
    text = ("An activation's 'mean' is its local derivative f′ averaged over every unit and example; its "
            "size ×… is ‖∂L/∂in‖/‖∂L/∂out‖ = √(Σ f′²·g² / Σ g²), f′ averaged as a root mean square "
            "weighted by the gradient g that arrives at each entry, so the two differ")
    if "relu" in activations:
        text += (": for ReLU (f′ = 0 or 1) the mean is the fraction of entries that are on, and the "
                 "size is √(the share of Σ g² that arrives at entries that are on)")
    return text + "."


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
    # Narrow, the factor's note wraps and the bar is cropped: the numbers are never cut
    table.add_column("layer", no_wrap=True)
    table.add_column("factor", no_wrap=False)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("product", justify="right", no_wrap=True)
    table.add_column("(log)", no_wrap=False, overflow="crop")
    logs = [math.log10(link.product) for link in links
            if link.product is not None and link.product > 0 and math.isfinite(link.product)]
    lo, hi = (min(logs), max(logs)) if logs else (0.0, 0.0)
    for link in links:
        if link.type == "loss":
            row = (Text("loss", style="bold"), Text("∂L/∂y"), Text(""), Text(num(link.product), style="bold"))
        elif link.type == "join":
            row = (Text("+ other paths", style="bold"), Text("into its input", style="dim"),
                   Text(f"×{num(link.factor)}", style="dim"), Text(num(link.product)))
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
    layer_links = [link for link in links if link.type not in ("loss", "weight", "join")]
    joins = [link for link in links if link.type == "join"]
    start = links[0].product if links else None
    if start is None:
        out.append("No gradients yet: this is the model before its first step. Press n to take one.",
                   style="yellow")
        return out
    factors = [link for link in links if link.type not in ("loss", "weight")]
    reach = factors[-1].product if factors else start
    if layer_links and reach is not None and start:
        counted = f"{len(layer_links)} factor{'s' if len(layer_links) != 1 else ''}"
        if joins:
            counted += f" and {len(joins)} join{'s' if len(joins) != 1 else ''}"
        out.append(f"{counted} took the gradient from {num(start)} to {num(reach)}: ×{num(reach / start)} overall.")
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
        if joins:
            out.append("\nAt a join, other paths (a shortcut, another layer) add their gradient to the layer's "
                       "own share at its input: the join's ×… is the sum over the share, so the product is "
                       "again the gradient measured there.", style="dim")
        measured = {"weight": chosen.grad_out_norm, "join": chosen.grad_in_total_norm}.get(links[-1].type,
                                                                                          chosen.grad_in_norm)
        if (measured is not None and reach is not None and measured > 0
                and abs(reach - measured) > 1e-6 * measured):
            out.append(f"\nMeasured directly it is {num(measured)}: the model is not a single chain "
                       "(a skip connection or a reused layer), so the product is only part of it.",
                       style="dim")
    elif not layer_links:
        out.append("This is the last layer: the loss's gradient reaches it directly.")
    if links[-1].type == "weight" and chosen.grad_ratio is not None:
        out.append(f"\nIt passes ‖∂L/∂in‖ = {num(chosen.grad_in_norm)} on to the layer below "
                   f"({factor_note(chosen)}: ×{num(chosen.grad_ratio)})", style="dim")
        if chosen.grad_in_total_norm is not None:
            out.append(f"; the other paths into its input bring that to {num(chosen.grad_in_total_norm)} "
                       f"(×{num(chosen.other_paths_ratio)})", style="dim")
        out.append(".", style="dim")
    elif links[-1].type == "weight" and chosen.type == "Embedding":
        out.append("\nIts input is indices (whole numbers, not a function of any weight): there is no "
                   "gradient to pass on below it. Only the rows the batch picked get a gradient; the "
                   "others get 0.", style="dim")
    if chosen.type == BESIDE:
        out.append("\nThis softmax is inside a fused attention function, which never makes its logits: its "
                   "probabilities are computed again beside it to measure them, so it has no gradient of its "
                   "own, and the chains of the other layers pass it by.", style="dim")
    activations = {link.activation for link in links if link.activation is not None}
    if activations:
        out.append("\n" + mean_and_size(activations), style="dim")
    return out


def inspector_title(state, layer_name: str, layer) -> Text:
    """The head line: the layer, its type, shape and mean local derivative, the step and the state."""
    snap = state.snapshot
    title = Text()
    title.append("Inspector  ", style="bold magenta")
    title.append(f"layer {layer_name}", style="bold")
    if layer is not None:
        w = layer_weight(layer)
        title.append(f"  {layer.type}")
        if w is not None:
            title.append(f" {'×'.join(str(n) for n in w.shape)}")
        if layer.activation is not None:
            title.append(f"  mean f' {num(layer.mean_local_derivative)}")
    if snap is not None:
        title.append(f"   step {snap.step}", style="dim")
        title.append(f"   {state.state}", style="dim")
    title.append("   escape: back", style="dim")
    return title


def grads_table(layer, snap):
    """Per parameter: the data-loss and penalty gradients, their sum, ‖θ‖ and ‖Δθ‖/‖θ‖, and the regulariser."""
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


def curvature_figures(layer, snap, model: dict):
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


def panel_title(what: str, where: str) -> Text:
    """A histogram panel's title: what it shows, in bold, and from when."""
    title = Text(what, style="bold")
    title.append(where, style="dim")
    return title


def ranks_section(spread, layer_name: str) -> Text | None:
    """The inspected layer across the ranks of a torch.distributed run: each rank's ‖∂L/∂out‖,
    measured on its own part of the batch before the all-reduce (so they differ), and ‖∂L/∂W‖,
    read after it (so it is the same everywhere; if not, the ranks are not averaging their
    gradients, or not at the same step). None when the layer is not in the spread."""
    layer = spread.layers.get(layer_name) if spread is not None else None
    if layer is None:
        return None
    heard = [r.rank for r in spread.ranks]
    out = Text(f"Across {spread.world} ranks (each its own part of the batch, before the all-reduce):\n")
    out.append("‖∂L/∂out‖ ")
    out.append(", ".join(f"rank {rank} {num(layer.grad_out.get(rank))}" for rank in heard), style="bold")
    if layer.grad_out_ratio is not None:
        out.append(f" (×{num(layer.grad_out_ratio)})", style="bold yellow" if layer.grad_out_ratio > 2 else "")
    weights = [layer.weight_grad.get(rank) for rank in heard]
    if all(w is None for w in weights):
        out.append("\n‖∂L/∂W‖: this layer has no parameters", style="dim")
    elif len(heard) > 1 and (layer.weight_ratio is None or layer.weight_ratio - 1 <= SAME_AFTER_ALL_REDUCE):
        out.append("\n‖∂L/∂W‖ after the all-reduce: the same on every rank", style="dim")
    else:
        out.append("\n‖∂L/∂W‖ after the all-reduce: ")
        out.append(", ".join(f"rank {rank} {num(w)}" for rank, w in zip(heard, weights)))
        if layer.weight_ratio is not None:
            out.append(f" (×{num(layer.weight_ratio)}): they differ, so the ranks' gradients are not "
                       "averaged (DistributedDataParallel does it)", style="yellow")
    if not spread.in_step:
        out.append("\nThe ranks are at different steps (" + ", ".join(f"rank {r.rank} step {r.step}"
                                                                     for r in spread.ranks) + ")", style="yellow")
    missing = [rank for rank in range(spread.world) if rank not in heard]
    if missing:
        out.append(f"\nnot heard from yet: rank{'s' if len(missing) > 1 else ''} "
                   + ", ".join(str(r) for r in missing), style="dim")
    return out
