"""The data view (see dataview.py): what the model makes of the training points' plane or line.
Taken at step 0, every `data_view_every` steps within `data_view_budget` of the training time
and at most every `data_view_interval` seconds, on a step-into, and whenever the run comes to
rest; it goes into that step's snapshot (the front end keeps the latest), not the history. Inputs with other than one or two features are told so
once, at step 0, and never measured."""
from __future__ import annotations

from .. import dataview
from ..backend import MODEL_ERRORS, ModelError
from ..schedule import Schedule
from .base import Quantity


class DataViews(Quantity):
    name = "data_view"
    reads_layers = True

    def start(self, session) -> None:
        c = session.config
        self._backend = session.backend
        self._interval, self._last = c.data_view_interval, -float("inf")
        self._step = lambda: session.step_count
        layers = session.backend.layers()
        self._ends_in = layers[-1].activation if layers else None
        if getattr(self, "points", None) is None:   # (start runs again when the layers grow)
            self.points = dataview.Points()
            self.schedule = Schedule(c.data_view_every, budget=c.data_view_budget, at_rest=c.data_view_every > 0)
            data = session.spec.data
            if isinstance(data, tuple) and len(data) == 2:
                try:
                    self.points.add(*self._backend.host_batch(data))
                    self.points.complete = True   # the whole set, or points evenly through it
                except MODEL_ERRORS:
                    pass   # (the first step says what is wrong with the data)

    def take(self, ctx=None, resting: bool = True):
        """This step's data view if it is due (`ctx` None: now, at rest), else None."""
        if self.schedule.every <= 0 and not self.schedule.at_rest:
            return None
        if ctx is not None:
            if not (ctx.traced or self.schedule.due(ctx.step, ctx.clock, resting=resting)):
                return None
            if not (ctx.traced or resting) and self._interval and ctx.clock.now() - self._last < self._interval:
                return None   # the interface redraws it a few times a second: more would be wasted
            if ctx.record.batch is not None and not self.points.full:
                try:
                    self.points.add(*self._backend.host_batch(ctx.record.batch), source=ctx.record.batch)
                except MODEL_ERRORS:
                    pass
        clock = ctx.clock if ctx is not None else None
        started = clock.now() if clock else 0.0
        step = ctx.step if ctx is not None else self._step()
        if ctx is not None and ctx.record.batch is None and self.points.X is None:
            return dataview.none(step, "the training script's own loop feeds the model, and its "
                                       "batches are not seen here")
        try:
            view = dataview.measure(step, self.points, self._backend.predict, self._ends_in)
        except MODEL_ERRORS as error:
            error = error.error if isinstance(error, ModelError) else error
            self.schedule.off()
            self.schedule.at_rest = False
            return dataview.none(step, f"the data view is off: evaluating the model on its inputs' range failed: "
                                       f"{type(error).__name__}: {error}")
        if view.kind == "none" and self.points.X is not None:
            self.schedule.off()          # nothing will change: the view says why, once
            self.schedule.at_rest = False
        if clock is not None:
            self._last = clock.now()
            cost = self._last - started
            clock.untimed(cost)   # not training time
            self.schedule.measured(ctx.step, cost, clock)
        return view
