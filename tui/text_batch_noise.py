"""What the inspector says about mini-batch gradient noise (calcml.debug.batchnoise): per
parameter of the layer and for the whole model, noise/signal ν = ‖the standard error of the
batch's mean gradient‖ / ‖that gradient‖, in plain words, with when and how it was measured.
"""
from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from calcml.debug.batchnoise import DOMINATES, EVEN, needed_batch

from .format import num

MOSTLY_SIGNAL = 0.5   # below: batches agree on the direction


def verdict(nu) -> tuple:
    """(words, style) for one noise/signal ratio."""
    if nu is None or (isinstance(nu, float) and math.isnan(nu)):
        return "no gradient to compare", "dim"
    if nu == 0:
        return "exact: the batch is the whole data set", "green"
    if nu < MOSTLY_SIGNAL:
        return "mostly signal: batches agree on the direction", "green"
    if nu <= EVEN:
        return "noisy, but the signal still leads", "yellow"
    if nu <= DOMINATES:
        return "about as much noise as signal", "yellow"
    return "mostly noise", "bold red"


def how_measured(b) -> str:
    if b.groups == 0:
        return f"step {b.step}: the batch is the whole data set ({b.batch_size:,} examples), so its gradient is exact"
    parts = "per-example gradients" if b.group_size == 1 else f"{b.groups} micro-batches of {b.group_size}"
    return f"step {b.step}, from {parts} of the batch's {b.batch_size:,} examples"


def model_line(b, lr) -> Text:
    """The whole model's ν and what would help."""
    nu = b.noise_signal
    words, style = verdict(nu)
    text = Text("whole model: noise/signal ")
    text.append(num(nu), style="bold")
    text.append(f"  {words}", style=style)
    if nu is not None and nu > EVEN:
        needed = needed_batch(b)
        bigger = f"a larger batch (about {needed:,} examples: noise/signal 1)" if needed else "a larger batch"
        text.append(f"; {bigger} or a smaller lr (now {num(lr)}) would help", style=style)
    return text


def batch_noise_panel(layer, snap):
    """The inspector's panel: the layer's parameters' ν, the model's, and what ν is."""
    b = snap.batch_noise if snap is not None else None
    if b is None:
        return Text("Not measured yet: the batch's gradient noise is measured every few steps "
                    "(batch_noise_every, 50 by default).", style="dim")
    if b.note is not None and b.noise_signal is None:
        return Text(b.note[0].upper() + b.note[1:] + ".", style="yellow")
    grid = Table.grid()
    grid.add_row(Text(how_measured(b), style="dim"))
    if layer.params:
        table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1))
        table.add_column("param", no_wrap=True)
        table.add_column("noise/signal", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        for short, p in layer.params.items():
            nu = b.by_param.get(p.name)
            words, style = verdict(nu)
            table.add_row(short, Text(num(nu), style=style), Text(words, style=style))
        grid.add_row(table)
    grid.add_row(model_line(b, snap.lr))
    if b.note is not None:
        grid.add_row(Text(b.note[0].upper() + b.note[1:] + ".", style="yellow"))
    grid.add_row(Text("noise/signal = ‖standard error of the batch's mean gradient‖ / ‖that gradient‖ "
                      "(the norm test): how far another batch's gradient would typically lie, against "
                      f"the gradient's own length. Above {DOMINATES:g} (the warning) the direction of a "
                      "step is more this batch's luck than the data's slope.", style="dim"))
    return grid
