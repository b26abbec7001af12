"""What the widgets, the screens and the text builders share: generic helpers over history
series and plots, and the one generic plot.

- plot scales: plotext cannot place every float (`fit_exponent`, `scaled`, `fitted_lines`),
  points thinned to a plot's width (`thin`), log10 axes (`log10_positive`, `log_ticks`);
- series: `carried_forward` (a series measured every few steps, NaN in between, held at its
  last value), `held` (such a series as the points of a plot line that holds each measurement
  flat until the next one: never a slope or a jump the data do not have), `first_last`,
  `group_means`, and the one `sparkline` (linear, or log with `log`; `carry` for a series
  measured every few steps: no holes between its measurements);
- `HistogramKeeper`: the latest histograms a run published and the step they are from;
- `FittedTitle`: a plot whose title is the longest of a few that fits its width;
- `LogSeriesPlot`: a few history series over the steps on a log scale (the curvature and
  Bayesian views' plots).
"""
from __future__ import annotations

import math
import sys

import numpy as np

from ..format import num
from .guarded_plot import GuardedPlot

# plotext turns values into screen positions with plain float arithmetic: values past about
# ±1e306, or a spread below about 1e-307, overflow inside it and building the figure raises. Values
# outside these bounds are plotted divided by a power of two (exact), their ticks labelled with
# the real values (`fit_exponent`).
PLOT_LARGE, PLOT_SMALL = 1e300, 1e-290
# A point far outside a plot's fixed y range costs plotext time and memory in proportion to how far
# (a line to 1e5 times the height outside never finishes): such points are drawn clipped to this
# many heights beyond the range, which still shows the line leaving the frame.
OFF_SCALE = 4


# -- plot scales -----------------------------------------------------------------------------------

def fit_exponent(*arrays) -> int:
    """0 when plotext can draw these (finite) values as they are; else the power of two e such
    that values·2⁻ᵉ lie within ±1: for values past ±1e300, and for tiny ones (below 1e-290, or
    differing by less than that) that plotext could not tell apart."""
    lo, hi = math.inf, -math.inf
    for y in arrays:
        y = np.asarray(y, dtype=float)
        if y.size:
            lo, hi = min(lo, float(np.min(y))), max(hi, float(np.max(y)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0
    largest = max(-lo, hi)
    spread = hi - lo   # inf at worst (Python floats)
    if largest <= PLOT_LARGE and not 0 < largest < PLOT_SMALL and not 0 < spread < PLOT_SMALL:
        return 0
    return math.frexp(largest)[1]


def scaled(y, exponent: int) -> np.ndarray:
    """y·2⁻ᵉ (y itself for e = 0)."""
    y = np.asarray(y, dtype=float)
    return np.ldexp(y, -exponent) if exponent else y


def real_value(t: float, exponent: int) -> float:
    """What a position on a plot scaled by 2⁻ᵉ stands for."""
    return float(np.ldexp(float(t), exponent)) if exponent else float(t)


def scaled_ticks(lines: list, exponent: int, count: int = 4) -> tuple | None:
    """(positions, labels) in the real values for a plot drawn scaled by 2⁻ᵉ, None when unscaled
    (plotext's own ticks are right then)."""
    if not exponent or not lines:
        return None
    lo = min(min(y) for _, y, _ in lines)
    hi = max(max(y) for _, y, _ in lines)
    positions = [lo] if not hi > lo else list(np.linspace(lo, hi, count))
    return positions, [num(real_value(t, exponent)) for t in positions]


def fitted_lines(lines: list) -> tuple:
    """(lines, ticks): (x, y, label) lines of finite values sharing one y axis, as plotext can
    draw them (see `fit_exponent`), with real-valued ticks when they had to be scaled."""
    exponent = fit_exponent(*(y for _, y, _ in lines))
    lines = [(list(x), scaled(y, exponent).tolist(), label) for x, y, label in lines]
    return lines, scaled_ticks(lines, exponent)


def thin(x: np.ndarray, y: np.ndarray, points: int):
    """At most `points` evenly spaced samples (plotting more than the width buys nothing)."""
    if len(x) <= points:
        return x, y
    keep = np.linspace(0, len(x) - 1, points).round().astype(int)
    return x[keep], y[keep]


def log10_positive(values: np.ndarray) -> np.ndarray:
    """log10 of the positive values, NaN for the rest."""
    with np.errstate(all="ignore"):
        return np.log10(np.where(values > 0, values, np.nan))


def log_ticks(lo: float, hi: float) -> tuple:
    """(positions, labels) for a log10 axis from lo to hi: decades (1e-3, 1e-2 ...) when it spans
    one or more, else a few values in between written out (0.131, 0.144)."""
    span = hi - lo
    if span >= 1:
        every = max(1, math.ceil(span / 5))
        positions = list(range(math.ceil(lo), math.floor(hi) + 1, every))
        return positions, [f"1e{k}" for k in positions]
    positions = [lo] if span == 0 else list(np.linspace(lo, hi, 4))
    return positions, [num(exp10(t)) for t in positions]


def exp10(t: float) -> float:
    """10**t, the largest float where that overflows (log10 of the largest float, rounded, is a
    hair past it) and 0 below the smallest."""
    try:
        return 10.0 ** float(t)   # a Python float raises where numpy's would warn
    except OverflowError:
        return sys.float_info.max


# -- series ---------------------------------------------------------------------------------------

def carried_forward(values: np.ndarray) -> np.ndarray:
    """Each NaN replaced by the last finite value before it (NaN until the first one)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    last = np.maximum.accumulate(np.where(finite, np.arange(len(values)), -1))
    out = np.full(len(values), np.nan)
    known = last >= 0
    out[known] = values[last[known]]
    return out


def held(steps, values, points: int, until=None):
    """(x, y) to draw a series measured at some steps (NaN at the others) as a line that holds
    each measurement until the next one and then steps to it: after steps that measured nothing
    the line stays at the earlier measurement, never on a slope between the two (which no
    measurement shows); between steps measured one after the other it is a plain line. The last
    measurement is held to `until` (the history's last step, when given). At most about
    `points` measurements (evenly spaced) are kept: a plot has no more columns than that."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    ok = np.isfinite(y)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return x[:0], y[:0]
    if len(idx) > points:
        idx = idx[np.linspace(0, len(idx) - 1, max(points, 1)).round().astype(int)]
    after_gap = np.zeros(len(idx), dtype=bool)
    after_gap[1:] = ~ok[idx[1:] - 1]          # the step before this measurement measured nothing
    xs, ys = [], []
    for k, i in enumerate(idx):
        if after_gap[k]:
            xs.append(x[i])
            ys.append(ys[-1])
        xs.append(x[i])
        ys.append(y[i])
    if until is not None and float(until) > xs[-1]:
        xs.append(float(until))
        ys.append(ys[-1])
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def first_last(history: dict, name: str):
    """(first step, first finite value, last finite value) of a history series, or None."""
    values, steps = history.get(name), history.get("step")
    if values is None or steps is None or len(values) == 0:
        return None
    ok = np.isfinite(values)
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    return int(steps[idx[0]]), float(values[idx[0]]), float(values[idx[-1]])


def group_means(values, width: int) -> np.ndarray:
    """The last points of a series averaged in `width` equal groups, so that each character of a
    sparkline is one stretch of steps. Missing (NaN) points are left out; a group with none
    stays NaN (a gap)."""
    values = np.asarray(values, dtype=float)
    if len(values) <= width:
        return values
    cut = len(values) - len(values) % width
    groups = values[len(values) - cut:].reshape(width, -1)
    present = np.isfinite(groups)
    counts = present.sum(axis=1)
    kept = np.where(present, groups, 0.0)
    with np.errstate(all="ignore"):
        means = np.where(counts > 0, kept.sum(axis=1) / np.maximum(counts, 1), np.nan)
        over = (counts > 0) & ~np.isfinite(means)   # finite points whose sum overflowed (1e308s):
        if over.any():                              # divided first, their mean is finite again
            means[over] = (kept[over] / counts[over, None]).sum(axis=1)
    return means


# -- sparklines ------------------------------------------------------------------------------------

SPARK = "▁▂▃▄▅▆▇█"

HALF_MAX = float(np.finfo(np.float64).max) / 2
_GROW = 2.0 ** 600   # a power of 2: scaling by it is exact


def fraction(x, lo: float, hi: float):
    """(x − lo)/(hi − lo) for finite lo < hi (x a number or an array): as written for every
    ordinary range; in halves where hi − lo overflows (−1e308..1e308), and scaled up by 2⁶⁰⁰
    where 1/(hi − lo) would (denormal ends)."""
    width = hi - lo
    if math.isfinite(width) and math.isfinite(1 / width):
        return (x - lo) / width
    factor = 0.5 if not math.isfinite(width) else _GROW
    with np.errstate(all="ignore"):
        return (x * factor - lo * factor) / (hi * factor - lo * factor)


def between(lo: float, hi: float, t):
    """lo + t·(hi − lo) for t in [0, 1], as lo·(1 − t) + hi·t where hi − lo overflows."""
    width = hi - lo
    with np.errstate(all="ignore"):
        if math.isfinite(width):
            return lo + t * width
        return lo * (1 - t) + hi * t


SPARK_SPAN = 0.01      # linear sparklines: changes under 1% of the value barely move
SPARK_DECADES = 0.1    # log sparklines: changes under a factor of 10^0.1 (26%) barely move


def sparkline(values, width: int = 20, log: bool = False, carry: bool = False) -> str:
    """The last values of a series, one block character each (each a stretch of steps, see
    `group_means`; a missing one is a gap), from the lowest to the highest: on a linear scale,
    where a flat series sits in the middle; with `log`, the last 4·width values on a log10 scale
    (the positive ones), where a flat series lies at the bottom.

    `carry`, for a series measured every few steps (NaN between): a stretch is the mean of the
    measurements in it, and one without any shows the last measurement before it (no hole, and
    no mean of a held value with a new one, which no measurement shows); before the first
    measurement it stays blank."""
    if values is None or len(values) == 0 or width < 1:
        return ""
    series = np.asarray(values, dtype=float)
    if log:
        series = series[-width * 4:]
        values = log10_positive(group_means(series, width))
    else:
        values = group_means(series, width)
    if carry:   # held from the last measurement before the stretches drawn, if there is one
        before = series[:len(series) - len(series) // width * width] if len(series) > width else series[:0]
        before = before[np.isfinite(before)]
        seed = (log10_positive(before[-1:]) if log else before[-1:]) if before.size else np.array([np.nan])
        values = carried_forward(np.concatenate([seed, values]))[1:]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return " " * len(values)
    lo, hi = float(finite.min()), float(finite.max())
    flat = not hi > lo if log else hi - lo <= 1e-12 * max(abs(hi), 1e-300)
    # A series that hardly moves is drawn nearly flat, not stretched over the full height: the
    # span drawn is at least SPARK_SPAN of its size (linear, centred on it) or SPARK_DECADES
    # decades (log, from its lowest).
    top = len(SPARK) - 1
    middle = None
    if not flat and log and hi - lo < SPARK_DECADES:
        hi = lo + SPARK_DECADES
    elif not flat and not log and math.isfinite(hi - lo) and hi - lo < SPARK_SPAN * max(abs(lo), abs(hi)):
        middle, span = (lo + hi) / 2, SPARK_SPAN * max(abs(lo), abs(hi))
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif flat:
            out.append(SPARK[0] if log else SPARK[3])
        elif middle is not None:   # centred on the flat level
            out.append(SPARK[min(max(int(round(3 + (v - middle) / span * top)), 0), top)])
        else:   # the span may be inf (−1e308..1e308): `fraction` measures it in halves
            level = int(round(float(fraction(v, lo, hi)) * top))
            out.append(SPARK[min(max(level, 0), top)])
    return "".join(out)


# -- histograms, titles, the log-scale plot ----------------------------------------------------------

class HistogramKeeper:
    """The latest histograms seen (they come only on some steps) and the step they are from."""

    def __init__(self):
        self.histograms: dict | None = None
        self.step: int | None = None

    def update(self, snapshot) -> bool:
        """Keep the snapshot's histograms if it has any; True if they are new."""
        if snapshot is None or not snapshot.histograms:
            return False
        if self.histograms is snapshot.histograms:
            return False
        self.histograms, self.step = snapshot.histograms, snapshot.step
        return True

    def seed(self, histograms: dict | None, step: int) -> None:
        """Start from these (e.g. step 0's) if nothing newer has been seen."""
        if self.histograms is None and histograms:
            self.histograms, self.step = histograms, step

    def get(self, key: str):
        return (self.histograms or {}).get(key)


def fit_title(titles, width: int) -> str:
    """The first of `titles` that fits a plot `width` columns wide (plotext drops a longer one)."""
    for title in titles:
        if len(title) <= width - 2:
            return title
    return titles[-1][:max(width - 3, 0)] + "…" if width > 3 else ""


class FittedTitle:
    """A plot whose title is chosen when it is drawn, the longest of a few that fits its width
    (plotext leaves out a title wider than the plot)."""

    titles: tuple = ()

    def render(self):
        self.plt.title(fit_title(self.titles, self.size.width) if self.titles else "")
        return super().render()


class LogSeriesPlot(GuardedPlot):
    """A few history series over the steps on a log scale (log10 plotted, ticks in real values)."""

    def draw(self, history: dict, title: str, series: list) -> bool:
        """`series`: (values, colour) with values on the history's step axis (NaN where a step
        measured none: each measurement is held until the next, see `held`); the title names the
        colours (a legend would hide the start of the lines). Returns whether anything was drawn."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        steps = history.get("step")
        lows, highs = [], []
        if steps is not None and len(steps):
            width = max((self.size.width or self.app.size.width) - 10, 10)   # 0 while hidden
            for values, colour in series:   # measured every few steps: held between (see `held`)
                x, y = held(steps, log10_positive(values), width, until=steps[-1])
                if len(x):
                    plt.plot(x.tolist(), y.tolist(), marker="braille", color=colour)
                    lows.append(y.min())
                    highs.append(y.max())
        if lows:
            lo, hi = float(min(lows)), float(max(highs))
            pad = max((hi - lo) * 0.08, 0.02)    # keep the lines off the frame
            plt.ylim(lo - pad, hi + pad)
            plt.yticks(*log_ticks(lo, hi))
        plt.xlabel("step")
        self.refresh()
        return bool(lows)
