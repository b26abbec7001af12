"""Small summaries of a recorded iteration, for stepping through it op by op.

A front end in another process cannot hold the arrays, so each op is summarised: its formula,
and for each array (value, upstream gradient, local factor, gradient passed on) the shape, mean,
std, min, max, number of zeros and of non-finite entries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from msgspec import Struct

from .codec import Count, Int


class ArrayStats(Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """An array in a few numbers; written as a fixed-length array [shape, mean, ...]."""
    shape: tuple[Count, ...]
    mean: float
    std: float
    min: float
    max: float
    zeros: Count
    non_finite: Count

    @classmethod
    def of(cls, value) -> "ArrayStats | None":
        """The statistics of the finite entries (the others are counted in `non_finite`). Never
        raises or warns, whatever the values: see `_mean_std` for entries near the float limits."""
        if value is None:
            return None
        a = np.asarray(value, dtype=float)
        finite = np.isfinite(a)
        n_bad = int(a.size - np.count_nonzero(finite))
        good = a[finite] if n_bad else a
        if good.size == 0:
            return cls(tuple(a.shape), float("nan"), float("nan"), float("nan"), float("nan"), 0, n_bad)
        lo, hi = float(good.min()), float(good.max())
        mean, std = _mean_std(good, max(-lo, hi))
        return cls(tuple(a.shape), mean, std, lo, hi, int(a.size - np.count_nonzero(a)), n_bad)


# Inside these limits on max |x| the plain mean and std are exact to rounding: the sum of up to
# 1e150 entries and the squared deviations (below 1e300) neither overflow nor underflow.
_PLAIN_LOW, _PLAIN_HIGH = 1e-150, 1e150


def _mean_std(good: np.ndarray, largest: float) -> tuple:
    """(mean, std) of finite values whose largest magnitude is `largest`. Outside the plain range
    (1e308s, whose sum overflows; denormals, whose squares vanish) the values are divided by
    `largest` first and the results multiplied back, so that the mean of 1e308s is 1e308, not inf,
    and the std of −1e308 and 1e308 is 1e308 (inf only past the largest float)."""
    with np.errstate(all="ignore"):
        if _PLAIN_LOW <= largest <= _PLAIN_HIGH:
            return float(good.mean()), float(good.std())
        if largest == 0:
            return 0.0, 0.0
        scaled = good / largest
        return float(scaled.mean()) * largest, float(scaled.std()) * largest   # Python floats: inf, never an error


class OpSummary(Struct, frozen=True):
    index: Int            # position in the stepping order (forward ops first, then backward)
    phase: str            # 'forward' or 'backward'
    op: str
    id: Int               # value id of the op's output
    scope: str
    module_type: Optional[str]
    inputs: tuple[str, ...]     # labels of the inputs: parameter names or t<id>s
    formulas: tuple[str, ...]
    value: Optional[ArrayStats] = None       # forward: the output
    upstream: Optional[ArrayStats] = None    # backward: dL/d(output)
    factors: tuple[Optional[ArrayStats], ...] = ()   # backward: per input, the local factor's statistics
    grads: tuple[Optional[ArrayStats], ...] = ()     # backward: per input, the gradient passed on
    name: str = ""        # what a library function called the op: its formula, e.g. '(ŷ − y)²'

    @property
    def non_finite(self) -> int:
        arrays = [self.value, self.upstream, *self.grads]
        return sum(a.non_finite for a in arrays if a is not None)

    @property
    def layer(self) -> str:
        return self.scope or "model"


class TraceSummary(Struct, frozen=True):
    ops: tuple[OpSummary, ...]

    def first_non_finite(self) -> int | None:
        for op in self.ops:
            if op.non_finite:
                return op.index
        return None


@dataclass(frozen=True)
class Location:
    phase: str
    op: str
    layer: str | None
    index: int
    bad: int = 0       # non-finite entries in that op's output (or gradient)
    size: int = 0
    kinds: str = ""    # 'nan', 'inf' or 'nan and inf'

    def describe(self) -> str:
        where = f"layer {self.layer}" if self.layer else "the loss function"
        what = "output" if self.phase == "forward" else "gradient"
        return (f"{self.phase} op #{self.index} '{self.op}' in {where} produced the first non-finite "
                f"{what} ({self.bad} of {self.size} entries {self.kinds})")


def _bad(a) -> tuple:
    a = np.asarray(a)
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    kinds = " and ".join(k for k, n in (("nan", nan), ("inf", inf)) if n)
    return nan + inf, a.size, kinds


def summarise_trace(t) -> TraceSummary | None:
    if t is None:
        return None
    ops = []
    names = getattr(t, "names", {})
    for r in t.forward:
        ops.append(OpSummary(len(ops), "forward", r.op, r.id, r.scope, r.module_type,
                             tuple(t.label(i) for i in r.inputs), r.formulas, value=ArrayStats.of(r.value),
                             name=names.get(r.id, "")))
    for r in t.backward:
        ops.append(OpSummary(len(ops), "backward", r.op, r.id, r.scope, r.module_type,
                             tuple(t.label(i) for i in r.inputs), r.formulas, upstream=ArrayStats.of(r.upstream),
                             factors=tuple(ArrayStats.of(f) for f in r.factors),
                             grads=tuple(ArrayStats.of(g) for g in r.grads), name=names.get(r.id, "")))
    return TraceSummary(tuple(ops))


def locate_non_finite(t) -> Location | None:
    """The first forward op (in order) whose output is non-finite, else the first backward op that
    produced a non-finite gradient."""
    if t is None:
        return None
    for r in t.forward:
        if not np.all(np.isfinite(r.value)):
            return Location("forward", r.op, r.scope or None, r.index, *_bad(r.value))
    for r in t.backward:
        for g in r.grads:
            if g is not None and not np.all(np.isfinite(g)):
                return Location("backward", r.op, r.scope or None, r.index, *_bad(g))
    return None
