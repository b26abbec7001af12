"""One batch per call from any of the model file's data forms; counts finished epochs."""
from __future__ import annotations

import numpy as np

from ..data import DataLoader


class BatchSource:
    """(X, y) arrays, a function returning one batch per call, or an iterable of batches (a
    generator ends the data when it runs out; anything else starts another epoch). `as_batch`
    turns what the data gives into the backend's (X, y)."""

    def __init__(self, data, batch_size, seed, as_batch):
        self.epoch = 0
        self._as_batch = as_batch
        self._full = self._function = self._iterable = self._iterator = None
        if data is None:   # an observed run: the user's loop has the data
            return
        if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
            if batch_size is None or batch_size >= len(data[0]):
                self._full = as_batch(data)  # the whole set every step: no copy, no shuffle
                return
            data = DataLoader(data, batch_size=batch_size, shuffle=True, seed=seed)
        if callable(data) and not hasattr(data, "__iter__"):
            self._function = data            # a function returning one batch per call
        else:
            self._iterable = data
            self._one_shot = iter(data) is data   # a generator cannot start a second epoch

    def next(self):
        if self._full is not None:
            self.epoch += 1
            return self._full
        if self._function is not None:
            return self._as_batch(self._function())
        if self._iterator is None:
            self._iterator = iter(self._iterable)
        try:
            return self._as_batch(next(self._iterator))
        except StopIteration:
            self.epoch += 1
            if self._one_shot:
                raise
            self._iterator = iter(self._iterable)
            return self._as_batch(next(self._iterator))
