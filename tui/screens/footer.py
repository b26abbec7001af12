"""Sub-screens' footers that fit 80 columns.

A sub-screen's footer lists its own keys and the main screen's. Below NARROW columns that is more
than fits, so the footer goes compact and drops the palette hint (ctrl+p still works), and the
main screen's view keys (b, h, v; r, s) keep working from the sub-screen without a place in its
footer (? help lists them).
"""
from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Footer

NARROW = 110


def quiet_app_keys(*keys: str) -> list:
    """Bindings that pass these main-screen keys on to the app, hidden from the footer."""
    actions = {"b": "breakpoints", "r": "regularisation", "h": "curvature", "v": "bayes", "s": "step_into"}
    return [Binding(key, f"app.{actions[key]}", show=False) for key in keys]


def fit_footer(screen, width: int) -> None:
    narrow = width < NARROW
    screen.set_class(narrow, "-narrow-footer")
    screen.query_one(Footer).compact = narrow
