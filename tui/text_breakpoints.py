"""What the breakpoints dialog says: the accepted forms, an example with one of the model's own
parameters, the names a breakpoint can use, and a refusal without the list it ends with."""
from __future__ import annotations

from rich.text import Text

from calcml.debug.breakpoints import HELP, LAYER_FUNCTIONS, PARAM_FUNCTIONS, VARIABLES
from calcml.debug.diagnostics import KINDS


def example_param(state) -> str:
    """A real parameter name for the hint (a weight if there is one)."""
    names = [p["name"] for p in (state.model or {}).get("params", [])]
    weights = [n for n in names if n.endswith("weight")]
    return (weights or names or ["layers.0.weight"])[0]


HINT = "accepted: step N · every N · a warning kind · a condition, e.g. loss > 2"


def placeholder(state) -> str:
    return f'e.g. grad_norm("{example_param(state)}") < 1e-6 · step 100 · every 50 · exploding_gradient'


def names_text(state) -> Text:
    """What can be named: warning kinds, variables, functions, and this model's parameters and layers."""
    model = state.model or {}
    params = [p["name"] for p in model.get("params", [])]
    layers = [layer["name"] for layer in model.get("layers", [])]
    text = Text(style="dim")
    text.append("warning kinds: " + ", ".join(KINDS))
    text.append("\nconditions use " + ", ".join(VARIABLES) + "; of a parameter: " + ", ".join(PARAM_FUNCTIONS)
                + "; of a layer: " + ", ".join(LAYER_FUNCTIONS) + "; abs, min, max")
    if params:
        text.append("\nparameters: " + ", ".join(params))
    if layers:
        text.append("   layers: " + ", ".join(layers))
    return text


def short_reason(error: str) -> str:
    """The refusal without the list of accepted forms that ends it (the dialog shows those already)."""
    for sep in ("; give ", ": give "):
        if error.endswith(sep + HELP):
            return error[: -len(sep + HELP)] + " (the names you can use are listed below)"
    return error
