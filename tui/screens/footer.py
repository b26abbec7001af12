"""Sub-screens' footers that fit 80 columns.

A sub-screen's footer lists its own keys and the main screen's. Below NARROW columns that is more
than fits, so the footer goes compact and drops the palette hint (ctrl+p still works), and the
main screen's view keys (b, h, v; r, s) and ctrl+r keep working from the sub-screen without a place in its
footer (? help lists them).
"""
from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

NARROW = 110


def quiet_app_keys(*keys: str) -> list:
    """Bindings that pass these main-screen keys on to the app, hidden from the footer (and
    ctrl+r, restart, which the main screen's footer shows)."""
    actions = {"b": "breakpoints", "r": "regularisation", "h": "curvature", "v": "bayes", "s": "step_into",
               "d": "data_view", "ctrl+r": "restart"}
    return [Binding(key, f"app.{actions[key]}", show=False) for key in (*keys, "ctrl+r")]


def fit_footer(screen, width: int) -> None:
    narrow = width < NARROW
    screen.set_class(narrow, "-narrow-footer")
    screen.query_one(Footer).compact = narrow


class SteadyFooter(Footer):
    """A footer that composes its keys again only when what it shows changed. Textual's own
    composes every key again whenever the bindings might have changed, which is every time a
    screen comes back to the top: tens of milliseconds of widgets mounted and styled, at each
    view opened or closed, for the same keys."""

    _shown = None

    def shows(self) -> tuple:
        """What the footer shows: its keys, whether each can act, and its style."""
        return (self.compact, tuple((binding.key, binding.description, enabled)
                                    for _, binding, enabled, _ in self.screen.active_bindings.values()
                                    if binding.show))

    def bindings_changed(self, screen) -> None:
        if self._bindings_ready and self.is_attached and screen is self.screen and self.shows() == self._shown:
            return
        super().bindings_changed(screen)

    def compose(self):
        if self._bindings_ready:
            self._shown = self.shows()
        yield from super().compose()


class MainFooter(SteadyFooter):
    """The main screen's footer. Below NARROW columns not every key fits: while the run can
    still train, ctrl+r (restart) is left out; once it has ended, the keys that can no longer
    do anything (run/pause, step) make room for it and for t (train on). Then the views that
    have nothing to show for this model go (v for a model with no posterior, d for inputs the
    data view cannot draw), and if the keys are still wider than the screen, the views in
    SPARE's order. Every key works whether shown or not (? help lists them)."""

    ENDED_ONLY = ("restart",)
    TRAINING_ONLY = ("toggle_pause", "next_step")
    SPARE = ("data_view", "bayes", "curvature")

    def shows(self) -> tuple:
        state = self.app.backend.state
        view = state.data_view
        return super().shows() + (self.app.size.width >= NARROW, state.state, bool(state.model),
                                  view is not None and view.kind == "none")

    def compose(self):
        if self.app.size.width >= NARROW:
            yield from super().compose()
            return
        state = self.app.backend.state
        ended = state.state in ("finished", "stopped")
        drop = set(self.TRAINING_ONLY if ended else self.ENDED_ONLY)
        model = state.model or {}
        if not (model.get("bayes_layers") or model.get("sampler")):
            drop.add("bayes")
        if state.data_view is not None and state.data_view.kind == "none":
            drop.add("data_view")
        widgets = [w for w in super().compose() if not (isinstance(w, FooterKey) and w.action in drop)]
        for action in self.SPARE:
            if _width(widgets) <= self.app.size.width - SLACK:
                break
            widgets = [w for w in widgets if not (isinstance(w, FooterKey) and w.action == action)]
        yield from widgets


SLACK = 8   # columns a compact footer needs beyond its keys' text (measured at 80)


def _width(widgets) -> int:
    """The columns a compact footer's keys take (key, space, description)."""
    return sum(len(w.key_display) + len(w.description) + 1 for w in widgets
               if isinstance(w, FooterKey) and w.action != "command_palette")   # (hidden when narrow)
