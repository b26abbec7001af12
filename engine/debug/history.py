"""Bounded history: one fixed-size ring of rows, so memory stays flat however long training runs.

Each recorded step is one row of a (capacity x series) float array; each named series is a
column. Steps record the same few sets of names over and over, so each set's columns are looked
up once; writing a step is then one row fill and one indexed store of all its values.
"""
from __future__ import annotations

import numpy as np


class History:
    """Named series of per-step values that share one step axis ('step').

    A series that starts late (e.g. a layer whose gradient appears later) or is missing at a
    step holds NaN there, so every series lines up with `series('step')`.
    """

    def __init__(self, capacity: int = 10_000):
        if capacity < 1:
            raise ValueError(f"a history needs a capacity of at least 1, got {capacity}")
        self.capacity = capacity
        self._columns: dict[str, int] = {"step": 0}
        self._rows = np.full((capacity, 8), np.nan)
        self._count = 0   # steps ever recorded, including those the ring has forgotten
        self._layouts: dict = {}   # tuple of series names -> their columns (steps repeat a few sets)

    def record(self, step: int, values: dict) -> None:
        """One row: `step`, and each value in its series' column (None and absent are NaN)."""
        names = tuple(values)
        columns = self._layouts.get(names)
        if columns is None:   # a new set of names: find (or add) their columns, once
            if len(self._layouts) >= 64:
                self._layouts.clear()
            columns = self._layouts[names] = np.array([self._column(name) for name in names], dtype=np.intp)
        row = self._rows[self._count % self.capacity]
        row.fill(np.nan)
        row[0] = step
        row[columns] = list(values.values())
        self._count += 1

    def _column(self, name: str) -> int:
        column = self._columns.get(name)
        return column if column is not None else self._add_column(name)

    def _add_column(self, name: str) -> int:
        column = self._columns[name] = len(self._columns)
        if column >= self._rows.shape[1]:  # room for more series: double the width (rare)
            wider = np.full((self.capacity, 2 * self._rows.shape[1]), np.nan)
            wider[:, :self._rows.shape[1]] = self._rows
            self._rows = wider
        return column

    @property
    def total(self) -> int:
        """How many steps were ever recorded (including those the ring has forgotten)."""
        return self._count

    def names(self) -> list[str]:
        return list(self._columns)

    def series(self, name: str) -> np.ndarray:
        """A copy of one series' kept values, oldest first."""
        column = self._rows[:, self._columns[name]]
        if self._count <= self.capacity:
            return column[:self._count].copy()
        start = self._count % self.capacity
        return np.concatenate((column[start:], column[:start]))

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    def last(self, name: str, default=np.nan) -> float:
        column = self._columns.get(name)
        if column is None or not self._count:
            return default
        return float(self._rows[(self._count - 1) % self.capacity, column])

    @property
    def nbytes(self) -> int:
        return self._rows.nbytes

    def to_dict(self) -> dict:
        """{name: list of floats (None for missing)}, for the JSON report (whole columns at a
        time: a report of 10,000 steps has about a million values)."""
        out = {}
        for name in self._columns:
            values = self.series(name)
            if name == "step":
                out[name] = values.astype(np.int64).tolist()
                continue
            finite = np.isfinite(values)
            if finite.all():
                out[name] = values.tolist()
            else:
                kept = values.astype(object)
                kept[~finite] = None
                out[name] = kept.tolist()
        return out
