"""When each measurement is taken: one mechanism for every quantity.

A quantity measured every step needs no schedule. The others are due every `every` steps
(counted from `offset`, or from the last measurement with `since_last`), and with a `budget`
(a fraction of the training time) not before training has taken 1/budget times as long as the
last measurement did: so a small model, whose measurements cost many steps each, spends at most
that fraction of its time on them. Some are also due whenever the run comes to rest (paused,
finished, or stepped into), where a person looks at the numbers.
"""
from __future__ import annotations

import time


class TrainingClock:
    """Seconds spent training, measurements that are not training left out."""

    def __init__(self):
        self.seconds = 0.0       # time spent in training steps so far
        self._started = 0.0
        self._untimed = 0.0

    @staticmethod
    def now() -> float:
        return time.perf_counter()

    def start_step(self) -> None:
        self._started, self._untimed = self.now(), 0.0

    def end_step(self) -> None:
        self.seconds += self.now() - self._started - self._untimed

    def untimed(self, seconds: float) -> None:
        """Time inside this step that was not training (a curvature measurement)."""
        self._untimed += seconds


class Schedule:
    def __init__(self, every: int, *, offset: int = 0, since_last: bool = False, budget: float | None = None,
                 at_rest: bool = False):
        self.every, self.offset, self.since_last = int(every), offset, since_last
        self.budget, self.at_rest = budget, at_rest
        self.last: int | None = None   # the step last measured
        self._wait = 0.0               # training seconds before the next scheduled one

    def due(self, step: int, clock: TrainingClock, resting: bool = False) -> bool:
        """Whether to measure at `step` (the step being taken, counted from 1)."""
        if self.at_rest and resting:
            return True
        if self.every <= 0:
            return False
        if self.since_last:
            on_time = self.last is None or step - self.last >= self.every
        else:
            on_time = (step - self.offset) % self.every == 0
        return on_time and clock.seconds >= self._wait

    def measured(self, step: int, cost: float, clock: TrainingClock) -> None:
        """A measurement at `step` took `cost` seconds: with a budget, the next one waits for it."""
        self.last = step
        if self.budget:
            self._wait = clock.seconds + cost / self.budget

    def off(self) -> None:
        self.every = 0
