"""Bounded history: the newest steps in full, older ones thinned, so memory stays flat however
long training runs and grows with the number of series far more slowly than a dense table would.

What is kept. `History(capacity)` covers the newest `capacity` recorded steps (the
`history_capacity` setting, 10,000 by default):

  * the newest steps in full, every step and every value written at it: as many as fit in
    `full_bytes` (4 MiB) of values, and never fewer than `min_full` (1,000) or more than
    `capacity`. A model writing up to about 50 values a step keeps all 10,000 steps in full,
    exactly as a plain ring would; the 64-layer net below (about 570 values a step) keeps its
    newest 1,000;
  * the older steps, back to `capacity` steps ago, thinned. A step is kept or dropped whole, so
    every kept step still has every value that was written at it and no value is moved or made up:
      - every step that wrote a series the most common set of series lacks is kept: a series
        measured every few steps (weight norms, update ratios and sparsity every `detail_every`,
        curvature and the Hessian diagonal every `curvature_every`, the validation loss every
        `val_every`) keeps every one of its measurements over the whole capacity;
      - of the other steps, one is kept whenever the last kept one is `thin_every` (10) or more
        steps back, so a series written every step (loss, lr, gradient norms) has a value at
        least every `thin_every` steps there; with detail steps every 10 steps these are
        usually the detail steps themselves and cost nothing extra.
    In the worst case (every step writing a different set of series) nothing is thinned and the
    history holds what a ring of `capacity` steps holds, storing only the values written.

Every series lines up with `series('step')`: `series(name)[i]` is the value written at step
`series('step')[i]`, NaN where that step wrote none. A series that starts late, or is written
only every few steps, is NaN on the other steps, as before; `len(history)` is the number of steps
kept (at most `capacity`) and `total` the number ever recorded.

How. A step stores only the values it was given, not a row as wide as every series there is:
the session writes the same few sets of names over and over (the every-step set, the detail-step
set, the curvature-step set), each such set (a "layout") is looked up once, and a step is one
slice store of its values into a chunk of memory plus its step number, layout and position in a
small table preallocated for `capacity` steps. The values live in chunks of one size (at most
512 KiB) that are filled in order and reused once every step in them has left; nothing is ever
copied to a wider array, so old and new tables never coexist. When a step leaves the full-
resolution window it is either copied once into the thinned part or dropped. Recording and each
read (one series, `to_dict` as a whole) hold a lock: a reader on another thread never sees a step
half recorded.

Precision. Everything is float64. A loss must round-trip exactly (1e-12 near convergence, 1e300
when diverging), and most statistics here are unbounded magnitudes (an exploding gradient norm
of 1e200 overflows float32, whose largest value is 3.4e38, to inf); float32 would fit only the
fractions (sparsity), about a tenth of the values, and would change the numbers the report
writes. Sparse storage and thinning give the memory without it: the history of a 64-layer net
(1,150 series, 10,000 steps, detail statistics every 10 steps) is about 14 MB (`nbytes`, which
counts every array the history holds), down from 164 MB as a dense float64 table; even with
every series written at every step it stays under 20 MB.
"""
from __future__ import annotations

import math
import threading

import numpy as np

FULL_BYTES = 4 << 20         # values of the newest steps kept in full ...
MIN_FULL = 1_000             # ... but at least this many steps (if the capacity allows)
THIN_EVERY = 10              # older steps: at most this many steps between kept ones
_CHUNK_MAX = 1 << 16         # floats in a chunk of values (512 KiB), unless one step needs more
_CHUNK_MIN = 256
_LAYOUTS = 256               # sets of names remembered before unused ones are forgotten


class _Chunks:
    """The chunks of values, by slot number, shared by the two parts of a history. They are all
    one size, about a sixteenth of the full-resolution window's values (at most 512 KiB), set by
    the first step with values and raised only for a step wider than a chunk. A chunk whose steps
    have all left is kept as the spare (one at most) for the next chunk needed."""

    def __init__(self, capacity: int, full_floats: int):
        self.capacity = capacity   # (for the chunk size: the full-resolution window holds at most
        self.full_floats = full_floats   # min(full_floats, capacity x width) values)
        self.size = 0              # floats in a chunk
        self.arrays: list = []     # slot -> float64 array, or None when the slot is unused
        self.live: list = []       # slot -> steps stored in it
        self.unused: list = []     # free slot numbers
        self.spare = None

    def take(self, width: int) -> int:
        """A chunk with room for at least `width` values, by slot number."""
        if width > self.size:
            window = min(self.full_floats, self.capacity * width)
            self.size = max(width, min(_CHUNK_MAX, max(_CHUNK_MIN, window // 16)))
        array, self.spare = self.spare, None
        if array is None or array.size < self.size:
            array = np.empty(self.size)
        if self.unused:
            slot = self.unused.pop()
            self.arrays[slot], self.live[slot] = array, 0
        else:
            slot = len(self.arrays)
            self.arrays.append(array)
            self.live.append(0)
        return slot

    def drop(self, slot: int) -> None:
        array = self.arrays[slot]
        self.arrays[slot] = None
        self.unused.append(slot)
        if array.size == self.size and self.spare is None:
            self.spare = array

    @property
    def nbytes(self) -> int:
        held = sum(a.nbytes for a in self.arrays if a is not None)
        return held + (self.spare.nbytes if self.spare is not None else 0)


class _Log:
    """Steps oldest first, in a ring of `rows` slots preallocated once: each step's number, record
    index, layout, and where its values are (chunk slot and offset; -1 for a step with none)."""

    def __init__(self, rows: int, chunks: _Chunks):
        self.rows = rows
        self.step = np.empty(rows)
        self.index = np.empty(rows, dtype=np.int64)
        self.layout = np.empty(rows, dtype=np.int32)
        self.slot = np.empty(rows, dtype=np.int32)
        self.offset = np.empty(rows, dtype=np.int32)
        self.head = 0
        self.n = 0
        self.chunks = chunks
        self.current = -1      # the chunk being filled
        self.filled = 0        # how much of it

    def reserve(self, width: int):
        """(chunk array, offset) where the next step's `width` values go (None for no values)."""
        if not width:
            return None, 0
        chunks = self.chunks
        current = self.current
        if current >= 0 and self.filled + width <= chunks.arrays[current].size:
            return chunks.arrays[current], self.filled
        if current >= 0 and not chunks.live[current]:
            chunks.drop(current)
        self.current, self.filled = chunks.take(width), 0
        return chunks.arrays[self.current], 0

    def commit(self, step, index: int, layout: int, width: int) -> None:
        """The step whose values were just written where `reserve` said."""
        i = self.head + self.n
        if i >= self.rows:
            i -= self.rows
        self.step[i] = step
        self.index[i] = index
        self.layout[i] = layout
        if width:
            self.slot[i], self.offset[i] = self.current, self.filled
            self.filled += width
            self.chunks.live[self.current] += 1
        else:
            self.slot[i], self.offset[i] = -1, 0
        self.n += 1

    def pop(self) -> None:
        """Forget the oldest step (its chunk is released once no kept step is in it)."""
        i = self.head
        slot = int(self.slot[i])
        if slot >= 0:
            live = self.chunks.live
            live[slot] -= 1
            if not live[slot] and slot != self.current:
                self.chunks.drop(slot)
        self.head = i + 1 if i + 1 < self.rows else 0
        self.n -= 1

    def newest(self) -> int:
        return (self.head + self.n - 1) % self.rows

    def ordered(self, array: np.ndarray) -> np.ndarray:
        """`array`'s kept entries, oldest first."""
        end = self.head + self.n
        if end <= self.rows:
            return array[self.head:end]
        return np.concatenate((array[self.head:], array[:end - self.rows]))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.step, self.index, self.layout, self.slot, self.offset))


class History:
    """Named series of per-step values that share one step axis ('step'); see the module
    docstring for which steps are kept.

    A series that starts late (e.g. a layer whose gradient appears later) or is missing at a
    step holds NaN there, so every series lines up with `series('step')`.
    """

    def __init__(self, capacity: int = 10_000, *, full_bytes: int = FULL_BYTES, min_full: int = MIN_FULL,
                 thin_every: int = THIN_EVERY):
        if capacity < 1:
            raise ValueError(f"a history needs a capacity of at least 1, got {capacity}")
        if thin_every < 1 or min_full < 1 or full_bytes < 0:
            raise ValueError(f"a history needs thin_every >= 1, min_full >= 1 and full_bytes >= 0, "
                             f"got {thin_every}, {min_full}, {full_bytes}")
        self.capacity = capacity
        self.full_bytes = full_bytes                  # values of the newest steps kept in full ...
        self.min_full = min(min_full, capacity)       # ... but at least this many steps
        self.thin_every = thin_every
        self._columns: dict[str, int] = {"step": 0}       # every series ever seen, in order
        # Layouts: the sets of names steps record, by number. A step stores its values in its
        # layout's order; `_positions[layout][name]` is where a series is among them.
        self._lookup: dict = {}             # tuple of names -> layout
        self._positions: list = []          # layout -> {name: position}, None when forgotten
        self._widths: list = []             # layout -> number of values
        self._seen: list = []               # layout -> steps recorded with it
        self._extra: list = []              # layout -> has a series the most common layout lacks
        self._free_layouts: list = []
        self._common = -1                   # the most common layout
        self._layout_limit = _LAYOUTS
        self._chunks = _Chunks(capacity, full_bytes // 8)
        self._full = _Log(capacity, self._chunks)
        self._full_values = 0               # values stored in the full-resolution window
        older = capacity - self.min_full
        self._thinned = _Log(older, self._chunks) if older else None
        self._last_kept = -thin_every       # record index of the newest step kept in the thinned part
        self._count = 0   # steps ever recorded, including those the history has forgotten
        self._view = None                   # (steps, layouts, offsets, runs) of the kept steps, oldest first
        self._where: dict = {}              # name -> its position in each layout (-1: not in it)
        # A read may come from another thread (the worker's flusher, while a step is slow) and
        # must not see a step half recorded, or a chunk reused under it.
        self._lock = threading.Lock()

    def record(self, step: int, values: dict) -> None:
        """One step: `step`, and each value in its series (None and absent are NaN)."""
        with self._lock:
            self._record(step, values)

    def _record(self, step: int, values: dict) -> None:
        names = tuple(values)
        layout = self._lookup.get(names)
        if layout is None:   # a new set of names: where each goes, once
            layout = self._add_layout(names)
        full = self._full
        width = self._widths[layout]
        chunk, offset = full.reserve(width)
        if width:
            chunk[offset:offset + width] = list(values.values())
        thinned = self._thinned
        if thinned is not None and thinned.n and thinned.index[thinned.head] <= self._count - self.capacity:
            thinned.pop()   # now older than the newest `capacity` steps (one step in, one out)
        if full.n == full.rows:
            self._retire()
        full.commit(step, self._count, layout, width)
        self._full_values += width
        while self._full_values * 8 > self.full_bytes and full.n > self.min_full:
            self._retire()
        self._count += 1
        seen = self._seen
        seen[layout] += 1
        if seen[layout] > seen[self._common] and layout != self._common:
            self._set_common(layout)
        self._view = None

    def _retire(self) -> None:
        """The oldest step leaves the full-resolution window: copied to the thinned part, or not."""
        full, thinned = self._full, self._thinned
        i = full.head
        layout = int(full.layout[i])
        width = self._widths[layout]
        if thinned is not None:
            index = int(full.index[i])
            if self._extra[layout] or index - self._last_kept >= self.thin_every:
                if thinned.n == thinned.rows:   # (cannot happen: the capacity bounds it)
                    thinned.pop()
                chunk, offset = thinned.reserve(width)
                if width:
                    start = int(full.offset[i])
                    chunk[offset:offset + width] = self._chunks.arrays[full.slot[i]][start:start + width]
                thinned.commit(full.step[i], index, layout, width)
                self._last_kept = index
        full.pop()
        self._full_values -= width

    # ---------------------------------------------------------------------------------- layouts

    def _add_layout(self, names: tuple) -> int:
        if len(self._lookup) >= self._layout_limit:
            self._forget_layouts()
        for name in names:
            if name not in self._columns:
                self._columns[name] = len(self._columns)
        if self._free_layouts:
            layout = self._free_layouts.pop()
        else:
            layout = len(self._positions)
            for table in (self._positions, self._widths, self._seen, self._extra):
                table.append(None)
        self._positions[layout] = {name: k for k, name in enumerate(names)}
        self._widths[layout], self._seen[layout] = len(names), 0
        self._lookup[names] = layout
        if self._common < 0:
            self._common = layout
        self._extra[layout] = self._has_extra(layout)
        self._where.clear()
        return layout

    def _has_extra(self, layout: int) -> bool:
        common = self._positions[self._common]
        return any(name not in common for name in self._positions[layout])

    def _set_common(self, layout: int) -> None:
        self._common = layout
        for other, positions in enumerate(self._positions):
            if positions is not None:
                self._extra[other] = self._has_extra(other)

    def _forget_layouts(self) -> None:
        """Steps keep recording new sets of names: forget the sets no kept step uses."""
        used = set(np.unique(self._full.ordered(self._full.layout)).tolist())
        if self._thinned is not None:
            used.update(np.unique(self._thinned.ordered(self._thinned.layout)).tolist())
        for names, layout in list(self._lookup.items()):
            if layout not in used:
                del self._lookup[names]
                self._positions[layout], self._widths[layout], self._seen[layout] = None, 0, 0
                self._extra[layout] = False
                self._free_layouts.append(layout)
        if self._positions[self._common] is None:
            alive = [k for k, p in enumerate(self._positions) if p is not None]
            self._common = max(alive, key=self._seen.__getitem__) if alive else -1
            if alive:
                self._set_common(self._common)
        self._layout_limit = max(_LAYOUTS, 2 * len(self._lookup))
        self._where.clear()

    # ---------------------------------------------------------------------------------- readers

    @property
    def total(self) -> int:
        """How many steps were ever recorded (including those the history has forgotten)."""
        return self._count

    def names(self) -> list[str]:
        with self._lock:
            return list(self._columns)

    def _kept(self):
        """The kept steps, oldest first: their steps, layouts, value offsets, and the runs of
        consecutive steps whose values are in one chunk (start, end, chunk)."""
        view = self._view
        if view is None:
            logs = [log for log in (self._thinned, self._full) if log is not None and log.n]
            if not logs:
                empty = np.empty(0)
                view = (empty, np.empty(0, dtype=np.int32), np.empty(0, dtype=np.intp), [])
            else:
                steps, layouts, slots, offsets = (np.concatenate([log.ordered(getattr(log, field)) for log in logs])
                                                  for field in ("step", "layout", "slot", "offset"))
                starts = np.flatnonzero(np.diff(slots)) + 1
                bounds = np.concatenate(([0], starts, [len(slots)])).tolist()
                arrays = self._chunks.arrays
                runs = [(a, b, arrays[slots[a]]) for a, b in zip(bounds[:-1], bounds[1:]) if slots[a] >= 0]
                view = (steps, layouts, offsets.astype(np.intp), runs)
            self._view = view
        return view

    def _positions_of(self, name: str) -> np.ndarray:
        where = self._where.get(name)
        if where is None:
            where = self._where[name] = np.array(
                [-1 if p is None else p.get(name, -1) for p in self._positions], dtype=np.intp)
        return where

    def series(self, name: str) -> np.ndarray:
        """A copy of one series' kept values, oldest first (NaN at kept steps that lack it)."""
        with self._lock:
            return self._series(name)

    def _series(self, name: str) -> np.ndarray:
        if name not in self._columns:
            raise KeyError(name)
        steps, layouts, offsets, runs = self._kept()
        if name == "step":
            return steps.copy()
        positions = self._positions_of(name)[layouts]
        absent = positions < 0
        out = np.empty(len(steps))
        if absent.all():
            out.fill(np.nan)
            return out
        where = offsets + positions     # (a step without the series reads a value it masks below)
        for a, b, chunk in runs:
            np.take(chunk, where[a:b], out=out[a:b], mode="wrap")
        out[absent] = np.nan
        return out

    def columns(self, names=None) -> dict:
        """{name: a copy of its kept values} for `names` (every series by default, 'step' always
        first), all from one moment: a step recorded on another thread meanwhile is in all of
        them or none."""
        with self._lock:
            if "step" not in self._columns:
                return {"step": np.empty(0)}
            wanted = [n for n in (self._columns if names is None else names) if n in self._columns and n != "step"]
            return {"step": self._series("step"), **{name: self._series(name) for name in wanted}}

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    def __len__(self) -> int:
        """The number of steps kept: the full-resolution window, then the thinned older steps."""
        with self._lock:
            return self._full.n + (self._thinned.n if self._thinned is not None else 0)

    def last(self, name: str, default=np.nan) -> float:
        """The value written at the newest step (NaN if it wrote none; `default` for a series
        never seen or an empty history)."""
        with self._lock:
            if name not in self._columns or not self._count:
                return default
            return self._last(name)

    def _last(self, name: str) -> float:
        full = self._full
        i = full.newest()
        if name == "step":
            return float(full.step[i])
        position = self._positions[full.layout[i]].get(name)
        if position is None:
            return math.nan
        return float(self._chunks.arrays[full.slot[i]][full.offset[i] + position])

    @property
    def nbytes(self) -> int:
        """Every array the history holds: the chunks of values (including the spare), the step
        tables, and the cached read-out index."""
        with self._lock:
            return self._nbytes()

    def _nbytes(self) -> int:
        size = self._chunks.nbytes + self._full.nbytes
        if self._thinned is not None:
            size += self._thinned.nbytes
        if self._view is not None:
            size += sum(a.nbytes for a in self._view[:3])
        return size + sum(w.nbytes for w in self._where.values())

    def to_dict(self) -> dict:
        """{name: list of floats (None for missing)}, for the JSON report (whole series at a
        time: a report of 10,000 steps has about a million values); all from one moment."""
        with self._lock:
            return {name: self._listed(name) for name in self._columns}

    def _listed(self, name: str) -> list:
        values = self._series(name)
        if name == "step":
            return values.astype(np.int64).tolist()
        finite = np.isfinite(values)
        if finite.all():
            return values.tolist()
        kept = values.astype(object)
        kept[~finite] = None
        return kept.tolist()
