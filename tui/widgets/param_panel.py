"""ParamPanel: one weight in the regularisation view (the text: text_regularisation.py)."""
from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ..text_regularisation import param_lines


class ParamPanel(Widget):
    """One weight: histogram now vs step 0, sparsity, ‖θ‖ over the steps, data vs penalty gradient."""

    DEFAULT_CSS = """
    ParamPanel { height: auto; width: 1fr; margin-bottom: 1; text-wrap: nowrap; text-overflow: clip; }
    """

    def __init__(self, layer: str, param: str, **kwargs):
        super().__init__(**kwargs)
        self.layer_name, self.param_name = layer, param
        self._stats = None
        self._history: dict = {}
        self._now = None          # (counts, edges, step)
        self._first = None        # (counts, edges)

    def show(self, stats, history: dict, now, first) -> None:
        self._stats, self._history, self._now, self._first = stats, history, now, first
        self.refresh(layout=True)

    def lines(self, width: int) -> list:
        return param_lines(self.layer_name, self.param_name, self._stats, self._history, self._now, self._first,
                           width)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.lines(max(width, 20)))

    def render(self) -> Text:
        text = Text("\n").join(self.lines(max(self.size.width, 20)))
        text.no_wrap = True
        return text
