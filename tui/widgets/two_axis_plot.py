"""TwoAxisPlot: one or two history series over the steps, each on its own linear scale (the
Bayesian view's ELBO and acceptance plots)."""
from __future__ import annotations

import numpy as np

from ..format import num
from .common import OFF_SCALE, FittedTitle, fit_exponent, held, real_value, scaled
from .guarded_plot import GuardedPlot


def robust_range(values: np.ndarray) -> tuple | None:
    """(low, high, clipped): the values' range, or, when a few first values lie far outside the
    rest (the first steps of training), the range of the values not far outside the rest, so
    that it is not squashed flat (clipped is then True: the far-off points run off the edge)."""
    y = np.asarray(values, dtype=float)
    y = y[np.isfinite(y)]
    if y.size == 0:
        return None
    lo, hi = float(y.min()), float(y.max())
    if y.size >= 10:
        rest = y[max(1, y.size // 20):]
        rlo, rhi = float(rest.min()), float(rest.max())
        span = rhi - rlo
        if span > 0 and hi - lo > 3 * span:
            near = y[(y >= rlo - span) & (y <= rhi + span)]   # the first points not far off stay in
            return float(near.min()), float(near.max()), True
    return lo, hi, False


def linear_ticks(lo: float, hi: float, count: int = 4, exponent: int = 0) -> tuple:
    """(positions, labels) from lo to hi; on a plot drawn scaled by 2⁻ᵉ (common.fit_exponent) the
    labels are the real values."""
    positions = [lo] if hi <= lo else list(np.linspace(lo, hi, count))
    return positions, [num(real_value(t, exponent), 4) for t in positions]


class TwoAxisPlot(FittedTitle, GuardedPlot):
    """One or two history series over the steps on linear scales, the first on the left axis,
    the second on the right one (each with its own scale); the title names the colours."""

    def draw(self, history: dict, titles: tuple, left: tuple, right: tuple | None = None,
             left_limits: tuple | None = None) -> bool:
        """`titles`: the title, then shorter ones for narrow plots; `left`, `right`: (values,
        colour); `left_limits` fixes the left axis (e.g. 0 to 1). Returns whether anything was drawn."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        steps = history.get("step")
        drawn, clipped = False, False
        if steps is not None and len(steps):
            width = max((self.size.width or self.app.size.width) - 14, 10)
            for side, series in (("left", left), ("right", right)):
                if series is None:
                    continue
                values, colour = series
                x, y = held(steps, values, width, until=steps[-1])   # a gap: the last value held
                if not len(x):
                    continue
                fixed = side == "left" and left_limits is not None
                exponent = 0 if fixed else fit_exponent(y)   # 1e308s are drawn scaled, ticks real
                y = scaled(y, exponent)
                limits = left_limits if fixed else robust_range(y)
                lo, hi = limits[0], limits[1]
                clipped = clipped or (len(limits) > 2 and limits[2])
                pad = max((hi - lo) * 0.08, 1e-9 + abs(hi) * 0.01)
                reach = OFF_SCALE * (hi - lo + 2 * pad)   # points off the scale: just off it
                y = np.clip(y, lo - pad - reach, hi + pad + reach)
                plt.plot(x.tolist(), y.tolist(), marker="braille", color=colour, yside=side)
                plt.ylim(lo - pad, hi + pad, yside=side)
                plt.yticks(*linear_ticks(lo, hi, 5 if limits == (0.0, 1.0) else 4, exponent), yside=side)
                drawn = True
        if clipped:   # the first, far-off points run off the plot's edge: say so where it fits
            titles = [t + " (first steps off scale)" for t in titles] + list(titles)
        self.titles = tuple(titles)
        plt.xlabel("step")
        self.refresh()
        return drawn
