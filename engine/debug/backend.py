"""What the debugger needs from a training framework, and nothing else.

A backend wraps one model, its loss, optimiser and data in one framework (the calcml engine:
`calcml_backend.CalcmlBackend`). The session and the quantities talk to it only through this
interface, so a second framework plugs in by implementing it, without touching either.

Two ways a step happens, and both give the session the same `StepRecord`:
  driven    the session asks for one: `step(batch)` runs the forward pass, the loss and the
            backward pass, capturing each layer's input, output and the gradients at both; the
            session then decides (after its finite check) whether `apply_update()` runs.
  observed  the user's own loop runs the step; the backend builds the record from its hooks
            before the optimiser step and hands it to `Session.observe_step(record)`, which
            returns whether to let the update happen, then calls `Session.observed_update_done()`
            after it (where a pause waits, on the training loop's own thread).

Arrays in a record are the framework's own (numpy for calcml; a torch backend's may live on a
GPU). The quantities reduce them with `probes`' functions, which return host floats, so only
scalars cross.
"""
from __future__ import annotations

from typing import NamedTuple

# What the model's own code can raise that is the model's mistake, not calcml's: every
# exception, and a sys.exit() or GeneratorExit from inside forward or loss. (KeyboardInterrupt
# is the person at the keyboard, and propagates.)
MODEL_ERRORS = (Exception, SystemExit, GeneratorExit)


class ParamInfo(NamedTuple):
    name: str          # full dotted name, e.g. '0.weight'
    shape: tuple
    layer: str         # the layer that owns it (a LayerInfo's name)
    short: str         # its name inside that layer, e.g. 'weight'
    size: int


# The type of a layer measured beside the model's computation rather than on it (attention's
# softmax inside a fused function, computed again): it has no gradients of its own, and the
# chain of factors from the loss passes it by.
BESIDE = "attention"


class LayerInfo(NamedTuple):
    name: str
    type: str                 # the module's class name, e.g. 'Linear'
    activation: str | None    # the activation's op name ('relu', 'sigmoid', ...) or None
    has_params: bool
    module: object = None     # the framework's layer: opaque here, it gives an activation's
                              # attributes (a leaky ReLU's negative_slope)


class Capture(NamedTuple):
    """One layer's call in this step: what flowed forward and what flowed back."""
    x: object          # the input array (None if the layer's input is not an array)
    out: object        # the output array
    grad_x: object     # ∂L/∂input through this layer: its own share (None when no gradient
                       # reached it, or the share was not measured, see grad_x_total)
    grad_out: object   # ∂L/∂output
    unit_axis: int = -1   # the axis of the units (a unit is dead or saturated across the rest):
                          # the features, or the channels of an image batch (1 in N×C×H×W)
    grad_x_total: object = None   # a fork (the input also goes elsewhere: a shortcut, a second
                                  # layer): ∂L/∂input over every path; None where grad_x is all of it


class StepRecord(NamedTuple):
    loss: float
    data_grads: dict          # parameter name -> ∂(data loss)/∂θ array (None: no gradient)
    captures: dict            # layer name -> Capture
    batch: object             # what the step trained on (curvature and noise re-evaluate it)
    trace: object = None      # a step-into: the op-by-op summary (tracesummary.TraceSummary)
    recorded: object = None   # the framework's own recording of it (for locate_non_finite)
    terms: dict | None = None  # extra terms the loss reported (a Bayesian model's ELBO terms)


class ModelError(Exception):
    """The model's own code failed in a backend call; `error` is what it raised, `stage` says
    where ('loss', 'regularizer', 'optimizer', 'validation', 'data')."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"{stage}: {error}")
        self.stage, self.error = stage, error


class ParamGroups:
    """What both frameworks' optimisers share (calcml's follow PyTorch's API), for a backend
    that has `optimizer` and `_objective(batch, regularizer)`: the learning rate in
    `param_groups`, and the closure of optimisers that re-evaluate the objective themselves."""

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _closure(self, batch, regularizer):
        """PyTorch's convention: zero the gradients, evaluate, backward, return the loss."""
        self.optimizer.zero_grad()
        loss = self._objective(batch, regularizer)
        loss.backward()
        return loss


class Backend:
    """The interface (every method is required unless it says otherwise)."""

    # -- what the model is ---------------------------------------------------------------
    def parameters(self) -> list:
        """[ParamInfo] in the model's order."""
        raise NotImplementedError

    def layers(self) -> list:
        """[LayerInfo] in forward order."""
        raise NotImplementedError

    optimizer_name: str = ""
    sampler: bool = False          # the optimiser samples a posterior (MCMC) rather than fits
    bayes_layers: tuple = ()       # names of layers with a weight posterior

    # -- one step --------------------------------------------------------------------------
    def step(self, batch, traced: bool = False) -> StepRecord:
        """Driven: forward, loss, backward, with captures (a step-into records every op)."""
        raise NotImplementedError

    def add_penalty(self, regularizer) -> tuple:
        """Add the regulariser's gradient to the parameters' gradients: ({name: penalty grad}, value)."""
        raise NotImplementedError

    def grads(self) -> dict:
        """{name: the gradient the optimiser will use (data loss + penalty), or None}."""
        raise NotImplementedError

    def weights(self) -> dict:
        """{name: the parameter's current values} (the arrays themselves, not copies, where the
        host can view them: a half-precision torch tensor is widened to float32)."""
        raise NotImplementedError

    def apply_update(self, record: StepRecord, regularizer) -> None:
        """The optimiser step (re-evaluating the objective itself where the optimiser asks to)."""
        raise NotImplementedError

    # -- the learning rate and the optimiser -----------------------------------------------
    @property
    def lr(self) -> float:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        raise NotImplementedError

    def effective_lr(self, name: str) -> float | None:
        """An adaptive optimiser's median per-entry step for one parameter (None for others)."""
        return None

    def optimizer_state(self) -> dict | None:
        """What the optimiser reports about its last step (Newton, HMC), or None."""
        return None

    # -- measurements that re-evaluate the model ---------------------------------------------
    def curvature(self, record: StepRecord, regularizer, step: int, iters: int, samples: int, seed: int):
        """λ_max, tr H and diag H of this step's objective (Hessian-vector products): CurvatureStats,
        or None where this step cannot be measured (an observed step whose loss was not seen)."""
        raise NotImplementedError

    curvature_cost = 0.0   # seconds the CurvatureStats curvature() last returned took, when it
                           # was measured before the call (an observed step's, at its backward)

    def gradient_noise(self, record: StepRecord, regularizer, samples: int) -> tuple:
        """({name: ‖std g‖/‖mean g‖}, mean loss, its standard error) over fresh weight draws."""
        raise NotImplementedError

    def batch_noise(self, record: StepRecord, groups: int, population: int | None, step: int):
        """Mini-batch gradient noise of this step (batchnoise.py): the data loss's gradient on
        `groups` micro-batches of the step's batch, at the weights the step started from, as
        BatchNoiseStats; None where the batch has fewer than 2 examples or this step's batch
        cannot be evaluated again (an observed step). The step's own gradients, the RNG and the
        model's buffers are left as they were."""
        return None

    def posterior_sigma(self) -> dict:
        """{layer: mean posterior σ} (Bayesian layers, or an MCMC chain's spread)."""
        return {}

    def validation_loss(self, val_data) -> float:
        raise NotImplementedError

    def predict(self, X):
        """The model's outputs for host inputs X ([n, features] float64) as a host float array:
        in eval mode, without gradients, nothing captured or recorded, and the model's modes and
        buffers left as they were (the data view)."""
        raise NotImplementedError

    def host_batch(self, batch) -> tuple:
        """A batch (as `step` takes it) as host numpy arrays (X, y)."""
        raise NotImplementedError

    def locate_non_finite(self, record: StepRecord):
        """(tracesummary.Location or None, TraceSummary, the recording): where the first NaN or
        Inf appeared, forward first, then backward (re-running the step recorded when it was not)."""
        raise NotImplementedError
