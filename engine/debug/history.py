"""Bounded history: fixed-size ring buffers, so memory stays flat however long training runs."""
from __future__ import annotations

import numpy as np


class RingBuffer:
    """The last `capacity` float values appended, oldest first."""

    __slots__ = ("_values", "_count")

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"a history needs a capacity of at least 1, got {capacity}")
        self._values = np.full(capacity, np.nan)
        self._count = 0

    @property
    def capacity(self) -> int:
        return self._values.shape[0]

    def append(self, value: float) -> None:
        self._values[self._count % self.capacity] = value
        self._count += 1

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    @property
    def total(self) -> int:
        """How many values were ever appended (including those the buffer has forgotten)."""
        return self._count

    def values(self) -> np.ndarray:
        """A copy of the kept values, oldest first."""
        n, cap = len(self), self.capacity
        if self._count <= cap:
            return self._values[:n].copy()
        start = self._count % cap
        return np.concatenate((self._values[start:], self._values[:start]))

    def last(self, default=np.nan) -> float:
        return float(self._values[(self._count - 1) % self.capacity]) if self._count else default


class History:
    """Named series of per-step values that share one step axis ('step').

    A series that starts late (e.g. a layer whose gradient appears later) is padded with NaN,
    so every series lines up with `series('step')`.
    """

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._series: dict[str, RingBuffer] = {"step": RingBuffer(capacity)}

    def record(self, step: int, values: dict) -> None:
        steps = self._series["step"]
        for name, value in values.items():
            buffer = self._series.get(name)
            if buffer is None:
                buffer = self._series[name] = RingBuffer(self.capacity)
                for _ in range(min(steps.total, self.capacity)):  # line up with earlier steps
                    buffer.append(np.nan)
            buffer.append(value)
        for name, buffer in self._series.items():
            if name != "step" and name not in values:
                buffer.append(np.nan)
        steps.append(step)

    def names(self) -> list[str]:
        return list(self._series)

    def series(self, name: str) -> np.ndarray:
        return self._series[name].values()

    def __contains__(self, name: str) -> bool:
        return name in self._series

    def __len__(self) -> int:
        return len(self._series["step"])

    def last(self, name: str, default=np.nan) -> float:
        buffer = self._series.get(name)
        return buffer.last(default) if buffer is not None else default

    def to_dict(self) -> dict:
        """{name: list of floats (None for missing)}, for the JSON report."""
        out = {}
        for name, buffer in self._series.items():
            values = buffer.values()
            if name == "step":
                out[name] = [int(v) for v in values]
            else:
                out[name] = [None if not np.isfinite(v) else float(v) for v in values]
        return out
