"""The message that carries the debug state to the screens.

The app's poll timer is the one place that reads the backend. When what the state holds has
changed, the app posts `StateChanged` to the screen on top, which redraws in its
`on_state_changed` handler what depends on the parts named; a screen that was covered catches up
with one message, naming everything that changed meanwhile, when it is on top again.
"""
from __future__ import annotations

from textual.message import Message


class StateChanged(Message, bubble=False):
    """`state` (the backend's DebugState) changed: `changed` names the parts, keys of
    `state.versions` ('snapshot', 'state', 'model', 'history', 'breakpoints', 'trace', ...),
    whose version moved since the screen was last told."""

    def __init__(self, state, changed) -> None:
        super().__init__()
        self.state = state
        self.changed = frozenset(changed)
