"""What the main screen says per layer and per warning: the layer table's cells (with a mark per
warning kind and a trend of the gradient's norm) and the lines of the warnings pane."""
from __future__ import annotations

from rich.text import Text

from .format import num, pct, short_type
from .widgets.common import sparkline

# A symbol and a colour per warning kind, so a glance at the table says what is wrong where.
WARNING_MARKS = {
    "vanishing_gradient": ("▼", "yellow"),
    "exploding_gradient": ("▲", "red"),
    "dead_relu": ("✖", "magenta"),
    "saturation": ("≈", "yellow"),
    "non_finite": ("!", "bold red"),
    "loss_diverging": ("↗", "red"),
    "lr_too_large": ("»", "red"),
}
TREND_WIDTH = 10   # characters of the ‖∇W‖ trend, a log-scale sparkline


def health(layer) -> str:
    """What an activation layer does to the gradient: its mean derivative, and dead/saturated units."""
    if layer.activation is None:
        return ""
    parts = [f"f' {num(layer.mean_local_derivative, 2)}"]
    if layer.dead_fraction is not None:
        parts.append(f"dead {pct(layer.dead_fraction)}")
    if layer.saturated_fraction is not None:
        parts.append(f"sat {pct(layer.saturated_fraction)}")
    if layer.kept_fraction is not None:   # Dropout: its mask's share of kept entries
        parts.append(f"kept {pct(layer.kept_fraction)}")
    return " ".join(parts)


def marks_by_layer(conditions) -> dict:
    out: dict = {}
    for c in conditions:
        out.setdefault(c.layer, []).append(c.kind)
    return out


def layer_cells(layer, marks: dict, history: dict, trend_width: int = TREND_WIDTH) -> tuple:
    """One row of the layer table, in COLUMNS order (widgets/layers.py): the warning marks, the
    name (in the colour of its first warning), type, shape, ‖W‖, ‖∇W‖, ‖∇pen‖, upd/W, what the
    activation does to the gradient, and ‖∇W‖'s trend."""
    w = layer.params.get("weight") or next(iter(layer.params.values()), None)
    kinds = marks.get(layer.name, [])
    mark = Text()
    for kind in kinds:
        symbol, style = WARNING_MARKS.get(kind, ("?", "red"))
        mark.append(symbol, style=style)
    name_style = WARNING_MARKS[kinds[0]][1] if kinds and kinds[0] in WARNING_MARKS else ""
    shape = "×".join(str(n) for n in w.shape) if w is not None else ""
    trend = sparkline(history.get(f"{w.name}.grad_norm"), trend_width, log=True) if w is not None else ""
    return (mark, Text(layer.name, style=name_style), short_type(layer.type), shape,
            num(w.weight_norm) if w else "", num(w.grad_norm) if w else "",
            num(w.penalty_grad_norm) if w else "", num(w.update_ratio) if w else "",
            health(layer), trend)


def warning_line(w) -> Text:
    """One line of the warnings pane: the step, the kind with its mark (✓ once cleared), the message."""
    symbol, style = WARNING_MARKS.get(w.kind, ("?", "red"))
    text = Text()
    text.append(f"{w.step:>7} ", style="dim")
    if w.event == "clear":
        text.append(f"✓ {w.kind} ", style="green")
        text.append(w.message.removeprefix("cleared: "), style="dim")
    else:
        text.append(f"{symbol} {w.kind} ", style=style)
        text.append(w.message)
    return text
