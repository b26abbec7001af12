"""What the curvature view and the layer inspector say about second derivatives: the latest
λ_max, tr H and lr edge, the per-parameter Hessian diagonal beside the optimiser's step, and the
state of Newton's method (the plots are widgets/edge_plot.py and widgets/newton_plot.py).
"""
from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from .format import as_float, num, view_title

NEAR_EDGE = 0.9          # lr/edge above this is shown as close to the edge


def edge_verdict(lr, curvature) -> tuple | None:
    """(lr/edge, words, style) for the current lr against the latest edge; None without an edge."""
    edge = curvature.lr_edge if curvature is not None else None
    if edge is None or lr is None or not edge > 0:
        return None
    ratio = lr / edge
    if ratio > 1:
        if curvature.edge_formula == "2/λ_max":
            words = (f"past the edge: each step multiplies the error along H's top eigenvector by "
                     f"|1 − η·λ_max| = {num(abs(1 - lr * curvature.lambda_max))} > 1, so it grows")
        else:
            words = "past the edge: the error along H's top eigenvector grows every step"
        return ratio, words, "bold red"
    if ratio > NEAR_EDGE:
        return ratio, "just inside the edge: stable, but barely", "bold yellow"
    return ratio, "inside the edge: stable on the quadratic model of the loss", "green"


def not_measured_text(model: dict | None, snapshot) -> Text:
    """Why there are no curvature numbers: turned off (and why), or not measured yet."""
    model = model or {}
    note = model.get("curvature_note")
    every = model.get("curvature_every")
    if note:
        return Text(note[0].upper() + note[1:] + ".", style="yellow")
    if every == 0:
        return Text("Curvature is off for this run (--curvature-every 0).", style="yellow")
    when = (f"at step 1, then every {every} steps or more (at most a tenth of the training time)"
            if every else "at step 1, then every few steps")
    text = Text("Not measured yet: ", style="yellow")
    text.append(f"λ_max, tr H and the Hessian diagonal are measured {when}")
    if snapshot is None or snapshot.step == 0:
        text.append(" (press n to take the first step).")
    else:
        text.append(".")
    return text


def curvature_lines(snapshot, model: dict | None) -> Text:
    """λ_max, tr H ± its standard error and when they were measured; the lr edge, its formula,
    and the current lr against it."""
    curvature = snapshot.curvature if snapshot is not None else None
    if curvature is None:
        return not_measured_text(model, snapshot)
    every = (model or {}).get("curvature_every")
    text = Text()
    text.append("λ_max ")
    text.append(num(curvature.lambda_max), style="bold")
    text.append("   tr H ")
    text.append(num(curvature.trace), style="bold")
    text.append(f" ± {num(curvature.trace_se, 2)}")
    text.append(f"   measured at step {curvature.step}", style="dim")
    if every:
        text.append(f", every {every}+ steps", style="dim")
    text.append("\n")
    lr = snapshot.lr
    if curvature.lr_edge is None:
        why = curvature.edge_formula
        text.append(why[:1].upper() + why[1:] + ".", style="dim")
        return text
    text.append("lr edge ")
    text.append(f"{curvature.edge_formula} = ")
    text.append(num(curvature.lr_edge), style="bold")
    text.append("   lr ")
    text.append(num(lr), style="bold")
    verdict = edge_verdict(lr, curvature)
    if verdict is not None:
        ratio, words, style = verdict
        text.append(" = ")
        text.append(f"{ratio:.3g}× the edge", style=style)
        text.append("\n")
        text.append(words, style=style)
    return text


def edge_context(snapshot, model: dict | None) -> Text:
    """One line for the inspector: λ_max and the lr edge against the current lr."""
    curvature = snapshot.curvature if snapshot is not None else None
    if curvature is None:
        return not_measured_text(model, snapshot)
    text = Text(f"λ_max {num(curvature.lambda_max)} (step {curvature.step})")
    verdict = edge_verdict(snapshot.lr, curvature)
    if verdict is None:
        text.append("   no single lr edge for this optimiser", style="dim")
        return text
    ratio, _, style = verdict
    text.append(f"   lr edge {curvature.edge_formula} = {num(curvature.lr_edge)}   lr {num(snapshot.lr)} = ")
    text.append(f"{ratio:.3g}× the edge", style=style)
    return text


def step_column(params, optimizer: str | None, curvature) -> str | None:
    """The heading of the optimiser's per-parameter step, or None when it has none to show:
    η/(√v̂+ε) for Adam and RMSprop, η/(√s+ε) for Adagrad, η for plain gradient descent."""
    if any(p.effective_lr is not None for p in params):
        return "η/(√s+ε)" if optimizer == "Adagrad" else "η/(√v̂+ε)"
    if curvature is not None and curvature.lr_edge is not None:
        return "η"
    return None


def param_rows(params, lr, optimizer: str | None, curvature, labels=None) -> tuple:
    """(headers, rows of Text): per parameter its Hᵢᵢ, 1/Hᵢᵢ and, where the optimiser has one, its
    step and step·Hᵢᵢ (≈ 1: the diagonal Newton step; ≥ 2: it overshoots along that parameter).
    `labels` name the rows (the parameters' full names by default)."""
    step_name = step_column(params, optimizer, curvature)
    headers = ["param", "Hᵢᵢ", "1/Hᵢᵢ"]
    if step_name:
        headers += [step_name, "step·Hᵢᵢ"]
    rows = []
    for p, label in zip(params, labels or [p.name for p in params]):
        h = p.hessian_diag
        row = [Text(label), Text(num(h)), Text(num(1 / h) if h is not None and h > 0 else "-")]
        if step_name:
            step = p.effective_lr if p.effective_lr is not None else (lr if step_name == "η" else None)
            product = step * h if step is not None and h is not None and h > 0 else None
            style = "bold red" if product is not None and product >= 2 else ""
            row += [Text(num(step)), Text(num(product), style=style)]
        rows.append(row)
    return headers, rows


def param_table(params, lr, optimizer: str | None, curvature, labels=None) -> Table:
    headers, rows = param_rows(params, lr, optimizer, curvature, labels)
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)
    for header in headers:
        table.add_column(header, justify="left" if header == "param" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def param_caption(params, optimizer: str | None, curvature) -> Text:
    step_name = step_column(params, optimizer, curvature)
    text = Text("Hᵢᵢ: the Hessian's diagonal, averaged over the parameter's entries (Hutchinson estimate"
                + (f", step {curvature.step}" if curvature is not None else "") + "). 1/Hᵢᵢ: the step a "
                "diagonal Newton method would take along it.", style="dim")
    if step_name == "η":
        text.append(" Gradient descent takes η for every parameter: step·Hᵢᵢ ≥ 2 overshoots along it.",
                    style="dim")
    elif step_name:
        text.append(f" {optimizer or 'The optimiser'} takes {step_name} per entry (the median is shown): "
                    "step·Hᵢᵢ near 1 is the diagonal Newton step, what it approximates.", style="dim")
    if any(p.hessian_diag is not None and p.hessian_diag <= 0 for p in params):
        text.append(" Hᵢᵢ ≤ 0: no curvature to divide by, so no Newton step (-).", style="dim")
    return text


def newton_lines(state: dict) -> Text:
    """Newton's method's report on its last step: the message, ‖g‖, the Newton decrement, the
    eigenvalue range and conditioning of H, and the damping it used."""
    text = Text()
    damped = state.get("damped")
    text.append(str(state.get("message", "")), style="yellow" if damped or not state.get("positive_definite")
                else "green")
    text.append("\n‖g‖ ")
    text.append(num(state.get("grad_norm")), style="bold")
    text.append("   Newton decrement √(gᵀH⁻¹g) ")
    text.append(num(state.get("newton_decrement")), style="bold")
    decrement = state.get("newton_decrement")
    if isinstance(decrement, (int, float)) and math.isfinite(as_float(decrement)):
        text.append(f"   ½·decrement² ≈ L − min L: {num(decrement * decrement / 2)}", style="dim")
    text.append("\nH eigenvalues ")
    text.append(f"[{num(state.get('min_eigenvalue'))}, {num(state.get('max_eigenvalue'))}]", style="bold")
    text.append("   condition number ")
    text.append(num(state.get("condition_number")), style="bold")
    text.append("   positive definite " + ("yes" if state.get("positive_definite") else "no"),
                style="" if state.get("positive_definite") else "bold yellow")
    text.append("\ndamping used ")
    text.append(num(state.get("damping_used")), style="bold yellow" if damped else "bold")
    text.append(f" (asked {num(state.get('damping'))}" + (", raised: Levenberg–Marquardt)" if damped else ")"))
    text.append(f"   step ‖η·d‖ {num(state.get('step_norm'))}", style="dim")
    return text


def curvature_title(state) -> Text:
    """The curvature view's head line: the optimiser, the lr, the step and where training stands."""
    return view_title("Curvature", (state.model or {}).get("optimizer", ""), state)
