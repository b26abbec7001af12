"""HistogramPanel: a title line, one or more text histograms on a shared axis, and a note."""
from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ..text_histogram import histogram_lines


class HistogramPanel(Widget):
    """A title line, one or more histograms on a shared axis, and an optional note."""

    DEFAULT_CSS = """
    HistogramPanel { height: auto; width: 1fr; text-wrap: nowrap; text-overflow: clip; }
    """

    def __init__(self, rows: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows
        self._title: Text = Text()
        self._series: list = []
        self._note: Text | None = None

    def show(self, title, series: list, note=None) -> None:
        self._title = title if isinstance(title, Text) else Text(str(title))
        self._series = series
        self._note = (note if isinstance(note, Text) else Text(note, style="dim")) if note else None
        self.refresh(layout=True)

    def lines(self, width: int) -> list:
        out = [self._title]
        out += histogram_lines(self._series, width, self.rows)
        if self._note is not None:
            out.append(self._note)
        return out

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.lines(max(width, 10)))

    def render(self) -> Text:
        lines = self.lines(max(self.size.width, 10))
        text = Text("\n").join(lines)
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text
