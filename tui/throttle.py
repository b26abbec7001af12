"""Redraw at most so often: expensive drawing (plots, panels) must not follow every update."""
from __future__ import annotations

import math

from textual.css.query import NoMatches


class Throttle:
    """Call `draw()` at most once every `every` seconds. A request that comes too soon is not
    lost: a timer on `widget` draws it when its turn comes, so the last change always shows.
    `clock` is read through the widget (`widget.clock`), so tests can stop time."""

    def __init__(self, widget, every: float, draw):
        self.widget, self.every, self.draw = widget, every, draw
        self.last = -math.inf
        self.pending = False
        self._timer = None

    def request(self) -> None:
        self.pending = True
        self._maybe()

    def _maybe(self) -> None:
        if not self.pending:
            return
        now = self.widget.clock()
        wait = self.last + self.every - now
        if wait <= 0:
            self.pending, self.last = False, now
            self.draw()
        elif self._timer is None:
            self._timer = self.widget.set_timer(wait, self._fired)

    def _fired(self) -> None:
        self._timer = None
        try:
            self._maybe()
        except NoMatches:  # the screen closed meanwhile
            pass
