"""What the step-into view says about one op of a recorded iteration: what a forward op computed
and from what, the chain rule a backward op applied (upstream gradient, local factor, gradient
passed on, for each input), and the statistics of each array, in the words of the engine's own
derivative table.

Ops are numbered #0, #1, ...; the values they make are t0, t1, ... (x0, x1 for data or constants a
PyTorch model was given), and a parameter goes by its name, so a value is never read as an op. An
op a library loss or composite ran is shown with the name it gave it ('(ŷ − y)²'). Statistics of
an array with NaN/Inf entries are of its finite entries, and say so."""
from __future__ import annotations

import math
import re

from rich.console import Group
from rich.table import Table
from rich.text import Text

from calcml import ops as derivative_table

from .format import num

BAD_STYLE = "bold red"
FORWARD_STYLE = "green"
BACKWARD_STYLE = "magenta"
DONE = ("finished", "stopped")


def _primitives() -> dict:
    """op name -> (elementwise?, infix symbol), from the engine's own derivative table."""
    try:
        from calcml.ops import PRIMITIVES
    except ImportError:  # pragma: no cover - the engine is always there in practice
        return {}
    return {op.name: (op.elementwise, op.symbol) for op in PRIMITIVES}


PRIMITIVES = _primitives()


# -- text for one op --------------------------------------------------------------------------

def shape_text(shape) -> str:
    shape = tuple(shape)
    return "scalar" if not shape else "×".join(str(n) for n in shape)


def _size(shape) -> int:
    return math.prod(shape) if shape else 1


def where_text(op) -> str:
    """Which part of the model ran the op, in words."""
    if op.scope:
        return f"layer {op.scope} ({op.module_type})" if op.module_type else f"layer {op.scope}"
    if op.module_type:
        return f"the model ({op.module_type})"
    return "the loss function"


def layer_cell(op) -> str:
    """The op list's last column: the layer, and the name a library function gave the op."""
    if op.scope:
        where = f"{op.scope} {op.module_type or ''}".rstrip()
    else:
        where = op.module_type or "loss"
    name = getattr(op, "name", "")
    return f"{where}: {name}" if name else where


def out_label(op) -> str:
    """The value an op made: t<id> (never #, which numbers the ops)."""
    return f"t{op.id}"


VALUE_LABEL = re.compile(r"[tx]\d+")


def expression(op) -> str:
    """What a forward op computed, e.g. '%4 = %3 + 0.bias' or '%6 = tanh(%5)'."""
    _, symbol = PRIMITIVES.get(op.op, (False, ""))
    if op.op == "linear" and len(op.inputs) in (2, 3):
        rhs = f"{op.inputs[0]} @ {op.inputs[1]}ᵀ" + (f" + {op.inputs[2]}" if len(op.inputs) == 3 else "")
    elif symbol and len(op.inputs) == 2:
        rhs = f"{op.inputs[0]} {symbol} {op.inputs[1]}"
    else:
        rhs = f"{op.op}({', '.join(op.inputs)})"
    return f"{out_label(op)} = {rhs}"


def _rhs(formula: str) -> str:
    return formula.split(" = ", 1)[1] if " = " in formula else formula


def _substitute(text: str, inputs: tuple) -> str:
    """Put the input labels in place of the formula's variable names (a, b or x, z)."""
    names = ("a", "b") if len(inputs) == 2 else ("x", "z") if len(inputs) == 1 else ()
    mapping = {}
    for i, name in enumerate(names):
        mapping[name] = inputs[min(i, len(inputs) - 1)]
    if not mapping:
        return text
    return re.sub(r"\b(" + "|".join(mapping) + r")\b", lambda m: mapping[m.group(1)], text)


def _paren(text: str) -> str:
    return text if re.fullmatch(r"[\w%.]+", text) else f"({text})"


def chain_rule(op) -> tuple:
    """(the rule in words, one line per input: the gradient it receives, written out), in the
    words of the op's entry in the engine's derivative table (its `chain` and `rule`; an
    elementwise op's factor is its formula's right-hand side, in the inputs' labels)."""
    entry = derivative_table.BY_NAME.get(op.op)
    elementwise = entry is not None and entry.elementwise
    up_shape = op.upstream.shape if op.upstream is not None else None
    n_inputs = len(op.inputs)
    fields = {"up": f"dL/d{out_label(op)}", "up_shape": shape_text(up_shape or ()),
              "x": op.inputs[0] if n_inputs else "x", "w": op.inputs[1] if n_inputs > 1 else "W"}
    lines = []
    for i, label in enumerate(op.inputs):
        grad = op.grads[i] if i < len(op.grads) else None
        if grad is None:
            lines.append(f"{label}: no gradient needed (it does not depend on any weight)")
            continue
        n = _size(grad.shape) // max(_size(up_shape), 1) if up_shape is not None else None
        fields.update(g=f"dL/d{label}", other=op.inputs[1 - i] if n_inputs == 2 else "W",
                      shape=shape_text(grad.shape), n=n if n else "n")
        if elementwise:
            formula = op.formulas[i] if i < len(op.formulas) else ""
            fields["factor"] = _paren(_substitute(_rhs(formula), op.inputs))
        template = entry.chain_text(i) if entry is not None else derivative_table.ROUTED_CHAIN
        line = template.format(**fields)
        if elementwise and up_shape is not None and tuple(grad.shape) != tuple(up_shape):
            line += derivative_table.BROADCAST_CHAIN.format(**fields)
        lines.append(line)
    rule = entry.rule_text if entry is not None else derivative_table.ROUTED_RULE
    return rule, lines


PARTIAL = "*"   # marks statistics of an array's finite entries only (it has NaN/Inf ones)


def stats_table(rows) -> Table:
    """rows: (label, ArrayStats). One line of statistics per array; where an array has NaN/Inf
    entries its mean, std, min and max (of the finite ones only) are marked * (see `finite_notes`)."""
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, padding=(0, 1),
                  collapse_padding=True, expand=False, show_edge=False)
    table.add_column("", overflow="fold", min_width=8)
    for name in ("shape", "mean", "std", "min", "max", "zeros", "NaN/Inf"):
        table.add_column(name, justify="right", no_wrap=True)
    for label, stats in rows:
        if stats is None:
            continue
        bad = Text(str(stats.non_finite), style=BAD_STYLE if stats.non_finite else "")
        mark = PARTIAL if stats.non_finite and stats.non_finite < _size(stats.shape) else ""
        table.add_row(label, shape_text(stats.shape), *(num(v) + mark for v in (stats.mean, stats.std, stats.min, stats.max)),
                      str(stats.zeros), bad)
    return table


def finite_notes(rows) -> list:
    """A line for each array with NaN/Inf entries: what its statistics are of."""
    notes = []
    for label, stats in rows:
        if stats is None or not stats.non_finite:
            continue
        size = _size(stats.shape)
        if stats.non_finite >= size:
            notes.append(Text(f"{label}: every entry is NaN/Inf, so it has no mean, std, min or max", style=BAD_STYLE))
        else:
            notes.append(Text(f"{PARTIAL} {label}: mean, std, min and max of its {size - stats.non_finite} finite "
                              f"entries only ({stats.non_finite} of {size} are NaN/Inf)", style="yellow"))
    return notes


def heading(op) -> Text:
    """The detail panel's title: which op, which pass, where."""
    arrow = "→ forward" if op.phase == "forward" else "← backward"
    bad = " · ! NaN/Inf" if op.non_finite else ""
    name = f" ({op.name})" if getattr(op, "name", "") else ""
    return Text(f"{arrow} op #{op.index}: {op.op}{name} in {where_text(op)}{bad}")


def pair_note(op, pair) -> str:
    if pair is None:
        return ""
    if op.phase == "forward":
        return f"m: its backward step is op #{pair.index}"
    return f"m: forward op #{pair.index} computed {expression(pair)}"


def _labelled(label: str, body, style: str = "") -> Text:
    text = Text()
    text.append(f"{label:<11}", style="bold")
    text.append(body if isinstance(body, Text) else Text(str(body), style=style))
    return text


def input_note(label: str, by_id: dict) -> str:
    source = by_id.get(label)
    if source is not None:
        return f"{label} (made by op #{source.index})"
    if VALUE_LABEL.fullmatch(label):
        return f"{label} (data or a constant)"
    return f"{label} (parameter)"


def forward_detail(op, by_id: dict) -> Group:
    parts = [_labelled("computes", expression(op))]
    if getattr(op, "name", ""):
        parts.append(_labelled("that is", op.name, "bold"))
    parts.append(_labelled("inputs", ", ".join(input_note(label, by_id) for label in op.inputs)))
    for k, formula in enumerate(op.formulas):
        parts.append(_labelled("derivative" if k == 0 else "", formula, "cyan"))
    rows = [(f"output {out_label(op)}", op.value)]
    rows += [(f"input {label}", by_id[label].value) for label in op.inputs if label in by_id]
    parts.append(stats_table(rows))
    parts += finite_notes(rows)
    return Group(*parts)


def _unit(stats) -> bool:
    """A scalar factor of exactly 1 or -1 (add, sub, neg, a bias)."""
    return tuple(stats.shape) == () and stats.min == stats.max and abs(stats.min) == 1


def backward_detail(op) -> Group:
    parts = [_labelled("of", op.name, "bold")] if getattr(op, "name", "") else []
    for k, formula in enumerate(op.formulas):
        parts.append(_labelled("formula" if k == 0 else "", formula, "cyan"))
    rule, lines = chain_rule(op)
    for k, line in enumerate(lines):
        parts.append(_labelled("chain rule" if k == 0 else "", line))
    parts.append(_labelled("", rule, "dim"))
    rows = [(f"upstream dL/d{out_label(op)}", op.upstream)]
    for i, label in enumerate(op.inputs):
        factor = op.factors[i] if i < len(op.factors) else None
        grad = op.grads[i] if i < len(op.grads) else None
        if factor is not None and not _unit(factor):   # a constant ±1 is in the chain rule line already
            rows.append((f"factor d{out_label(op)}/d{label}", factor))
        if grad is not None:
            rows.append((f"passed on dL/d{label}", grad))
    parts.append(stats_table(rows))
    parts += finite_notes(rows)
    return Group(*parts)


# -- the view's head and its notes --------------------------------------------------------------

def head_text(mode: str, trace, trace_step, state) -> Text:
    """The head line: what is shown ('recording', 'stopped': nothing recorded, 'shown': `trace`,
    of training step `trace_step`), how the run ended if it has, the first NaN/Inf, the op count."""
    text = Text()
    text.append(" STEP INTO ", style="bold reverse")
    if mode == "recording":
        text.append("  recording one iteration…")
    elif mode == "stopped":
        text.append(f"  the run has {state.state}: nothing to show")
    elif trace is not None:
        ops = trace.ops
        stop = state.stop or {}
        if trace_step is not None:
            text.append(f"  step {trace_step}")
        if state.state in DONE:
            here = trace_step is not None and stop.get("step") == trace_step
            why = f": {stop['reason']}" if stop.get("reason") else ""
            text.append(f"  (the run {state.state} here{why})" if here else
                        f"  (last recorded; the run has {state.state}{why})", style="yellow")
        first = trace.first_non_finite()
        if first is None:
            text.append("  no NaN/Inf", style="dim")
        else:
            text.append(f"  first NaN/Inf: op #{first}", style=BAD_STYLE)
        n_fwd = sum(1 for o in ops if o.phase == "forward")
        text.append(f"  {len(ops)} ops: {n_fwd} forward →, {len(ops) - n_fwd} backward ←")
    return text


def waiting_text(step) -> Text:
    """While the iteration of training step `step` (None: not known) is being recorded."""
    text = Text()
    text.append("recording one iteration…", style="bold")
    if step is not None:
        text.append(f" (training step {step})")
    text.append("\n\nThe forward pass computes the loss op by op; the backward pass then applies the "
                "chain rule op by op, from the loss back to every weight.", style="dim")
    return text


def nothing_recorded_text(state) -> Text:
    """The run ended before any iteration was recorded: how, and why."""
    stop = state.stop or {}
    text = Text()
    text.append(f"No iteration was recorded: the run has {state.state}", style="bold")
    if stop.get("reason"):
        text.append(f" ({stop['reason']})")
    text.append(".\n\n")
    if stop.get("detail"):
        text.append(stop["detail"], style="dim")
    return text
