"""What the quantities of one step share: the step's record and the numbers measured so far.

A norm is computed once however many quantities ask for it (a layer's input gradient is often
the previous layer's output gradient: the same array). The quantities write their numbers into
the context's slots, in the layout `snapshot.StepLayers` builds its statistics from, and their
history values into `series`.
"""
from __future__ import annotations

from . import probes
from .snapshot import EMPTY


class StepContext:
    __slots__ = ("step", "record", "backend", "regularizer", "thresholds", "clock", "traced", "resting",
                 "grad_norms", "penalty_grads", "penalty", "param_numbers", "layer_grads", "layer_acts",
                 "detail", "hessian", "series", "warn", "failures", "detailed", "hold", "wants_detail",
                 "_norms")

    def __init__(self, step: int, record, backend, regularizer, thresholds, clock, traced: bool, resting: bool):
        self.step = step                  # the step being taken, counted from 1
        self.record = record              # backend.StepRecord
        self.backend = backend
        self.regularizer = regularizer
        self.thresholds = thresholds
        self.clock = clock
        self.traced = traced              # a step-into
        self.resting = resting            # the run stands still after this step
        self.grad_norms: dict = {}        # name -> ‖∂(data loss)/∂θ‖, from the finite check
        self.penalty_grads: dict = {}
        self.penalty = 0.0
        self.param_numbers: list = []     # per parameter: (grad, penalty grad, total grad norm)
        # per layer: (output shape, ‖∂L/∂in‖ through it, ‖∂L/∂out‖, a fork's ‖∂L/∂in‖ over every path)
        self.layer_grads: list = []
        self.layer_acts: list = []        # per layer: (mean local derivative, dead, saturated)
        self.detail = EMPTY               # name -> (weight norm, update, ratio, sparsity, effective lr)
        self.hessian = EMPTY              # name -> mean Hᵢᵢ
        self.series: dict = {}            # history values of this step
        self.warn: set = set()            # quantities with a number over a threshold: run their full checks
        self.detailed = False             # this step measures what needs a pass over every weight
        self.hold = False                 # keep θ before the step: a pause or breakpoint may come after it
        self.wants_detail = False         # a breakpoint reads a weight's norm, update or sparsity
        self.failures: list = []          # (what, error): the model's code failed in a measurement
        self._norms: dict = {}

    def norm(self, array) -> float:
        """‖array‖, computed once per array this step."""
        key = id(array)
        value = self._norms.get(key)
        if value is None:
            value = self._norms[key] = probes.norm(array)
        return value
