"""Mini-batch gradient noise: how much of a step's gradient is this batch's luck, not the data's slope.

A step's gradient ḡ is the mean of its B examples' gradients g₁..g_B. Another batch drawn from
the same data gives another ḡ; how far apart such batches' gradients lie, against how long ḡ
is, says whether the direction a step takes is the data's or the batch's. For each parameter
(its entries j) and for the whole model (every entry of every parameter):

    noise/signal  ν = ‖SE(ḡ)‖ / ‖ḡ‖,     ‖SE(ḡ)‖² = (Σ_j s_j² / B) · (1 − B/N)

s_j² is the sample variance over the batch's examples of entry j of the gradient (ddof 1), so
Σ_j s_j²/B is the expected squared distance of ḡ from the gradient over all the data. ν is the
statistic of the norm test (Byrd, Chin, Nocedal & Wu 2012; Bollapragada, Byrd & Nocedal 2018):
the batch passes the test with tolerance θ when ν ≤ θ. Without the last factor it is what
Cockpit's `NormTest` reports (the largest θ that passes). The factor (1 − B/N), N the number of
examples in the data set, is the finite-population correction of sampling without replacement:
it is applied when N is known (the model file's data are arrays (X, y)), so that a batch that
is the whole data set has ν = 0 (its gradient is the exact one: no larger batch exists).

  ν < 0.5     mostly signal: batches agree on the direction
  ν ≈ 1       the spread between batches is as long as the gradient itself; a batch's gradient
              points about 45° away from the data's (cos ≈ 1/√(1 + ν²) where the noise is
              spread over many directions)
  ν > 2       mostly noise (the warning's default): a step follows the batch more than the data.
              A batch ν²/θ² times as large would pass with θ (SE shrinks as 1/√B), or a smaller
              lr averages the noise over more steps.

How it is measured. Per-example gradients cost B backward passes, so the batch is split into m
micro-batches of b = ⌊B/m⌋ examples each (the last B − m·b examples are left out), each with
the data loss's gradient G_k on its own examples. The G_k are means of b examples, so their
spread is s²/b: with Ḡ their mean and S = Σ_k ‖G_k − Ḡ‖² / (m − 1),

    Σ_j s_j² ≈ b·S,   ‖SE‖² = (b·S / B) · (1 − B/N),   ν = ‖SE‖ / ‖Ḡ‖.

With m = B (micro-batches of one) this is the per-example formula exactly; with fewer it
estimates the same thing from m − 1 degrees of freedom (about ±√(1/(2(m−1))) relative error on
ν: ±18% for m = 16). Scaling every G_k by one constant leaves ν unchanged, so it is the same
whether the loss averages or sums over the batch. The variance is accumulated in float64 by
Welford's update (no cancellation when ν is small). A batch that is the whole data set is not
measured: its ν is 0.

Assumed: the examples of a batch are independent draws and the loss is a sum or mean of
per-example terms. Layers that mix examples (batch normalisation) see smaller batches here
than in the step; dropout's and a Bayesian layer's draws are part of the noise measured.
The penalty's gradient is the same for every example and is left out: this is the data loss's.
"""
from __future__ import annotations

import math

import numpy as np
from msgspec.structs import replace

from .snapshot import BatchNoiseStats

EVEN = 1.0        # ν here: the noise is as long as the signal
DOMINATES = 2.0   # ν above this: mostly noise (the default of Thresholds.batch_noise)


def plan(batch_size: int, groups: int) -> tuple:
    """(m, b): m micro-batches of b examples each (m ≥ 2), or (0, 0) when the batch has too few
    examples to show a spread."""
    m = min(int(groups), int(batch_size))
    if m < 2:
        return 0, 0
    return m, batch_size // m


def batch_length(batch) -> int:
    """How many examples the batch (X, y) has: the length of both along the first axis."""
    X, y = batch
    n = len(X)
    if len(y) != n:
        raise ValueError(f"the batch's inputs have {n} examples and its targets {len(y)}: "
                         "they must match along the first axis to be split into micro-batches")
    return n


class Moments:
    """Welford's running mean and summed squared deviation of each parameter's gradient over the
    micro-batches, in float64. A parameter without a gradient in any micro-batch is left out."""

    def __init__(self, names: list):
        self.names = names
        self.count = 0
        self.mean: list = [None] * len(names)
        self.m2 = np.zeros(len(names))
        self.missing = [False] * len(names)

    def add(self, grads: list) -> None:
        self.count += 1
        k = self.count
        for i, g in enumerate(grads):
            if g is None or self.missing[i]:
                self.missing[i] = True
                continue
            g = np.asarray(g, dtype=np.float64).reshape(-1)
            mean = self.mean[i]
            if mean is None:
                self.mean[i] = g.copy()
                continue
            delta = g - mean
            mean += delta / k
            self.m2[i] += float(np.dot(delta, g - mean))


def stats(moments: Moments, b: int, batch_size: int, population: int | None, step: int) -> BatchNoiseStats:
    """The noise/signal ratios from the micro-batches' moments (see the module docstring)."""
    m = moments.count
    scale = b / batch_size / (m - 1) * _correction(batch_size, population)
    by_param, noise2, signal2 = {}, 0.0, 0.0
    for i, name in enumerate(moments.names):
        mean = moments.mean[i]
        if moments.missing[i] or mean is None:
            by_param[name] = None
            continue
        se2 = moments.m2[i] * scale
        s2 = float(np.dot(mean, mean))
        noise2 += se2
        signal2 += s2
        by_param[name] = _ratio(se2, s2)
    return BatchNoiseStats(step=step, noise_signal=_ratio(noise2, signal2), batch_size=batch_size, groups=m,
                           group_size=b, population=population, by_param=by_param)


def _correction(batch_size: int, population: int | None) -> float:
    """1 − B/N: a batch drawn without replacement from N examples (1 when N is not known)."""
    return max(0.0, 1.0 - batch_size / population) if population else 1.0


def _ratio(noise2: float, signal2: float) -> float | None:
    if not math.isfinite(noise2) or not math.isfinite(signal2):
        return None
    if signal2 > 0:
        return math.sqrt(max(noise2, 0.0) / signal2)
    return math.inf if noise2 > 0 else None   # no gradient at all: nothing to compare


def measure(gradients, names: list, batch_size: int, groups: int, population: int | None,
            step: int) -> BatchNoiseStats | None:
    """`gradients(start, stop)`: the data loss's gradient on examples start:stop of the step's
    batch, one array (or None) per name. None when the batch has fewer than 2 examples."""
    if population and batch_size >= population:   # the whole data set: the exact gradient
        return BatchNoiseStats(step=step, noise_signal=0.0, batch_size=batch_size, groups=0, group_size=0,
                               population=population, by_param={name: 0.0 for name in names})
    m, b = plan(batch_size, groups)
    if not m:
        return None
    moments = Moments(names)
    for k in range(m):
        moments.add(gradients(k * b, (k + 1) * b))
    return stats(moments, b, batch_size, population, step)


def with_note(stats: BatchNoiseStats | None, step: int, note: str) -> BatchNoiseStats:
    """The latest measurement (or, before any, an empty one at `step`) saying why it is off."""
    if stats is None:
        return BatchNoiseStats(step=step, noise_signal=None, batch_size=0, groups=0, note=note)
    return replace(stats, note=note)


def needed_batch(stats: BatchNoiseStats, theta: float = EVEN) -> int | None:
    """About how many examples a batch needs for ν ≤ θ (ν² falls as 1/B, and with the data set's
    size known also as 1 − B/N), or None when it cannot say."""
    nu, B, N = stats.noise_signal, stats.batch_size, stats.population
    if nu is None or not math.isfinite(nu) or not theta > 0 or not B:
        return None
    correction = _correction(B, N)
    if correction <= 0:
        return None
    spread = nu * nu * B / correction     # Σ_j s_j² / ‖ḡ‖²: ν² = spread/B · (1 − B/N)
    # θ² = spread/B − spread/N  ⇒  B = spread / (θ² + spread/N)   (at most N)
    return max(1, math.ceil(spread / (theta * theta + (spread / N if N else 0.0))))
