"""GradientFlowPlot: log10 ‖∇W‖ per layer over the steps, as a heat strip with the latest
step's bars (the main screen; the text: text_gradflow.py).

It is as tall as a row per layer needs (the stylesheet caps it, and then two layers share a
row), and it draws on the event loop: its text costs a few milliseconds, not a plotext figure's
tens, so it needs no thread.
"""
from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ..text_gradflow import gradient_flow_text, rows_needed, weight_series

__all__ = ["GradientFlowPlot", "weight_series"]


class GradientFlowPlot(Widget):
    """log10 of each layer's ‖∇W‖ over steps: vanishing shows as the rows fading towards the
    input side, exploding as them turning yellow, NaN/Inf and dead layers as their own marks."""

    DEFAULT_CSS = """
    GradientFlowPlot { height: auto; min-height: 5; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._history: dict = {}
        self._layer_params: list = []
        self._built: tuple | None = None      # (key, Text)

    def show(self, history: dict, layer_params: list) -> None:
        rows = rows_needed(self._history, self._layer_params)
        self._history, self._layer_params = history, list(layer_params)
        self._built = None
        self.refresh(layout=rows_needed(history, layer_params) != rows)

    def get_content_height(self, container, viewport, width: int) -> int:
        return rows_needed(self._history, self._layer_params)

    def render(self) -> Text:
        key = (self.size.width, self.size.height)
        if self._built is None or self._built[0] != key:
            self._built = (key, gradient_flow_text(self._history, self._layer_params, *key))
        return self._built[1]
