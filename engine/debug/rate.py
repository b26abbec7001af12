"""Steps per second over the last second or so."""
from __future__ import annotations

import time
from collections import deque


class Rate:
    def __init__(self):
        self._times: deque = deque(maxlen=256)

    def tick(self) -> float:
        now = time.perf_counter()
        self._times.append(now)
        while len(self._times) > 2 and now - self._times[0] > 1.0:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])
