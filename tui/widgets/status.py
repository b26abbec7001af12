"""StatusBar: the main screen's two-line header (the text: text_status.py)."""
from __future__ import annotations

from textual.widgets import Static

from ..text_status import rate_text, status_text

__all__ = ["StatusBar", "rate_text"]   # rate_text: the headless report imports it from here


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 2; background: $panel; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(self, state) -> None:
        self.update(status_text(state))
