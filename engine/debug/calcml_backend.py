"""The calcml engine as a debugger backend (see backend.py for the interface).

Layers are the modules that own parameters directly, and leaf modules. During a step the
engine's module-call hook (`calcml.scope.recorder`) keeps each layer's input and output tensors
and asks the engine to keep their gradients; a step-into records every op with `tracing.trace`.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from .. import nn
from .. import random as _random
from .. import scope
from ..tensor import Tensor, branch, enable_grad, is_grad_enabled, no_grad
from ..tensor import grad as _grad
from ..tracing import trace
from . import batchnoise, bayesprobe, curvatureprobe, probes
from .backend import MODEL_ERRORS, Backend, Capture, LayerInfo, ModelError, ParamGroups, ParamInfo, StepRecord
from .tracesummary import locate_non_finite, summarise_trace



def _grad_array(t):
    """The numpy array behind t.grad (records and probes work on arrays), or None."""
    g = t.grad
    return None if g is None else g.data


class CalcmlBackend(ParamGroups, Backend):
    def __init__(self, model, loss, optimizer):
        self.model, self.loss_fn, self.optimizer = model, loss, optimizer
        self.modules = layer_modules(model)     # [(name, module)], forward order
        self._params = list(model.named_parameters())
        layer_of = {id(p): (layer_name, short) for layer_name, module in self.modules
                    for short, p in module._parameters.items() if p is not None}
        owner = [layer_of.get(id(p), (name.rpartition(".")[0] or "model", name)) for name, p in self._params]
        with_params = {layer for layer, _ in owner}
        self._param_info = [ParamInfo(name, p.shape, layer, short, p.size)
                            for (name, p), (layer, short) in zip(self._params, owner)]
        self._layer_info = [LayerInfo(name, type(module).__name__, probes.ACTIVATIONS.get(type(module)),
                                      name in with_params, module) for name, module in self.modules]
        self._recorder = LayerRecorder(self.modules)   # one, cleared every step
        self._bayes = bayesprobe.layers_of(model)
        self.bayes_layers = tuple(name for name, _ in self._bayes)
        self.sampler = hasattr(optimizer, "posterior_std")   # MCMC (cm.bayes.HMC): a chain, not a fit
        self.optimizer_name = type(optimizer).__name__
        self._needs_closure = bool(getattr(optimizer, "requires_closure", False))

    # -- what the model is ------------------------------------------------------------------
    def parameters(self) -> list:
        return self._param_info

    def layers(self) -> list:
        return self._layer_info

    def layer_module(self, name: str):
        return dict(self.modules)[name]

    # -- one step ---------------------------------------------------------------------------
    def step(self, batch, traced: bool = False) -> StepRecord:
        X, y = batch
        recorder = self._recorder
        recorder.begin(traced)
        context = trace() if traced else nullcontext()
        scope.recorder = recorder
        try:
            # NaN and Inf are found and explained by the session; numpy's own warnings would only be noise.
            with context as recorded, np.errstate(all="ignore"):
                if self._bayes:
                    bayesprobe.clear_elbo(self.model)
                loss = self.loss_fn(self.model(X), y)
                _check_loss(loss)
                terms = bayesprobe.read_elbo(self.model) if self._bayes else None
                self.optimizer.zero_grad()
                loss.backward()
        except MODEL_ERRORS as error:
            raise ModelError("loss", error) from None
        finally:
            scope.recorder = None
        recorder.found_forks()
        captures = {}
        for name, (x, out) in recorder.calls.items():
            own, whole = recorder.input_grads(name, x)
            # an image batch N×C×H×W (conv, pool, BatchNorm2d and what follows them): a unit is a channel
            captures[name] = Capture(x.data if x is not None else None, out.data, own, _grad_array(out),
                                     1 if out.data.ndim == 4 else -1, whole)
        recorder.clear()   # let go of this step's tensors
        # Summarised now, before the update: a trace's arrays are references, and some (W^T, the
        # matmul factor d(x@W^T)/dx) are views of the weights that the optimiser changes in place.
        summary = summarise_trace(recorded) if traced else None
        return StepRecord(float(loss.data), self.grads(), captures, batch,
                          summary, recorded if traced else None, terms)

    def add_penalty(self, regularizer) -> tuple:
        try:   # a regulariser's `select` is the model file's code
            with np.errstate(all="ignore"):
                penalty_grads = regularizer.grads(self.model)
                penalty = regularizer.value(self.model)
        except MODEL_ERRORS as error:
            raise ModelError("regularizer", error) from None
        for name, p in self._params:
            if name in penalty_grads and p.grad is not None:
                p.grad = p.grad.data + penalty_grads[name]
        return penalty_grads, penalty

    def grads(self) -> dict:
        return {name: _grad_array(p) for name, p in self._params}

    def weights(self) -> dict:
        return {name: p.data for name, p in self._params}

    def apply_update(self, record: StepRecord, regularizer) -> None:
        if not self._needs_closure:
            self.optimizer.step()
            return
        try:
            with np.errstate(all="ignore"):
                self.optimizer.step(lambda: self._closure(record.batch, regularizer))
        except MODEL_ERRORS as error:
            raise ModelError("optimizer", error) from None

    def _objective(self, batch, regularizer) -> Tensor:
        """What training minimises on this batch, as one Tensor: data loss + penalty."""
        X, y = batch
        loss = self.loss_fn(self.model(X), y)
        if regularizer is not None:
            loss = loss + regularizer.penalty(self.model)
        return loss

    # -- the optimiser (lr, set_lr and the closure: ParamGroups) --------------------------------
    def effective_lr(self, name: str) -> float | None:
        return curvatureprobe.effective_lr(self.optimizer, self._param(name))

    def optimizer_state(self) -> dict | None:
        state = getattr(self.optimizer, "state_info", None)
        return dict(state) if state else None

    def _param(self, name: str):
        return dict(self._params)[name]

    # -- measurements that re-evaluate the model -------------------------------------------------
    def curvature(self, record: StepRecord, regularizer, step: int, iters: int, samples: int, seed: int):
        try:
            with np.errstate(all="ignore"):
                return curvatureprobe.measure(lambda: self._objective(record.batch, regularizer), self._params,
                                              self.optimizer, step, iters=iters, samples=samples, seed=seed)
        except MODEL_ERRORS as error:
            raise ModelError("curvature", error) from None

    def gradient_noise(self, record: StepRecord, regularizer, samples: int) -> tuple:
        try:
            with np.errstate(all="ignore"):
                return bayesprobe.gradient_noise(lambda: self._objective(record.batch, regularizer),
                                                 self._params, samples)
        except MODEL_ERRORS as error:
            raise ModelError("gradient noise", error) from None

    def batch_noise(self, record: StepRecord, groups: int, population: int | None, step: int):
        if record.batch is None:
            return None
        params = [p for _, p in self._params]
        generator = _random.generator()
        rng, np_rng = generator.bit_generator.state, np.random.get_state()

        def gradients(start: int, stop: int) -> list:
            loss = self.loss_fn(self.model(X[start:stop]), y[start:stop])
            _check_loss(loss)
            return [None if g is None else g.data for g in _grad(loss, params, allow_unused=True)]

        try:
            X, y = record.batch
            with enable_grad(), np.errstate(all="ignore"):
                return batchnoise.measure(gradients, [name for name, _ in self._params], batchnoise.batch_length((X, y)),
                                          groups, population, step)
        except MODEL_ERRORS as error:
            raise ModelError("mini-batch noise", error) from None
        finally:   # (a Bayesian layer draws its weights from the engine's generator)
            generator.bit_generator.state = rng
            np.random.set_state(np_rng)

    def posterior_sigma(self) -> dict:
        if self._bayes:
            return bayesprobe.posterior_sigma(self._bayes)
        if self.sampler:
            return bayesprobe.chain_sigma(self.optimizer, self.modules)
        return {}

    def validation_loss(self, val_data) -> float:
        Xv, yv = val_data
        self.model.eval()
        try:
            with no_grad():
                return float(self.loss_fn(self.model(Xv), yv).data)
        except MODEL_ERRORS as error:
            raise ModelError("validation", error) from None
        finally:
            self.model.train()

    def predict(self, X):
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            with no_grad(), np.errstate(all="ignore"):
                dtype = next((p.data.dtype for _, p in self._params), np.float64)
                out = self.model(Tensor(np.asarray(X, dtype=dtype)))
            return np.asarray(out.data if isinstance(out, Tensor) else out, dtype=float)
        except MODEL_ERRORS as error:
            raise ModelError("data view", error) from None
        finally:
            for module, mode in modes:
                object.__setattr__(module, "training", mode)

    def host_batch(self, batch) -> tuple:
        return tuple(np.asarray(b) for b in as_batch(batch))

    def locate_non_finite(self, record: StepRecord):
        recorded = record.recorded
        if recorded is None:  # run the same step again, recorded, to find where it happened
            X, y = record.batch
            self.model.zero_grad()
            try:
                with trace() as recorded, np.errstate(all="ignore"):
                    loss = self.loss_fn(self.model(X), y)
                    loss.backward()
            except MODEL_ERRORS:
                pass
        return locate_non_finite(recorded), summarise_trace(recorded), recorded


def layer_modules(model: nn.Module) -> list:
    """(name, module) for each layer: modules owning parameters directly, and leaf modules."""
    layers = []
    for name, module in model.named_modules():
        if module._parameters or not module._modules:
            if module is model and model._modules and not module._parameters:
                continue
            layers.append((name or "model", module))
    return layers


class LayerRecorder:
    """Installed as `calcml.scope.recorder` during the forward pass: keeps each layer's input and
    output tensors (references) and asks the engine to keep their gradients.

    A layer whose input also goes elsewhere (a residual block's first layer, whose input the
    shortcut adds back; q, k and v reading one x) is a fork: ∂L/∂x is its own share plus the
    other paths'. To measure the share, the layer is handed a branch of x (tensor.branch), whose
    gradient is the share while x's is the whole. The first untraced step branches every layer and
    keeps as forks those whose share is not the whole; later steps branch only those. A traced
    step branches none (its ops are the model's own), so a fork's share is not measured there."""

    def __init__(self, layers: list):
        self.names = {id(module): name for name, module in layers}
        self.calls: dict = {}
        self.finding = True
        self.forks: set = set()
        self._inputs: dict = {}     # layer -> x, for the layers handed a branch of x this step
        self._branching = False

    def begin(self, traced: bool) -> None:
        self.clear()
        self._branching = not traced and (self.finding or bool(self.forks))

    def enter(self, module, args) -> tuple:
        if not self._branching or not args:
            return args
        name = self.names.get(id(module))
        if name is None or not (self.finding or name in self.forks):
            return args
        x = args[0]
        if not isinstance(x, Tensor) or not x.requires_grad or not is_grad_enabled():
            self._inputs.pop(name, None)
            return args
        x.retain_grad()
        self._inputs[name] = x
        # x in several arguments (attention's query, key and value) gets the same branch in
        # each: its gradient is the layer's whole share, a fork only where x also goes elsewhere
        view = branch(x)
        return tuple(view if a is x else a for a in args)

    def __call__(self, module, args, output) -> None:
        name = self.names.get(id(module))
        if name is None or not hasattr(output, "retain_grad"):
            return
        x = args[0] if args and hasattr(args[0], "retain_grad") else None
        output.retain_grad()
        if x is not None and x.requires_grad:
            x.retain_grad()
        self.calls[name] = (x, output)

    def found_forks(self) -> None:
        """After the backward pass of the first branched step: which layers are forks."""
        if not (self.finding and self._branching):
            return
        for name, x in self._inputs.items():
            own, whole = self.calls[name][0].grad if name in self.calls else None, x.grad
            # x read by this layer alone: its gradient is the branch's own array
            if own is not None and whole is not None and whole.data is not own.data \
                    and not np.array_equal(whole.data, own.data):
                self.forks.add(name)
        self.finding = False

    def input_grads(self, name: str, x) -> tuple:
        """(∂L/∂x through the layer, ∂L/∂x over every path where x is a fork, else None)."""
        if x is None:
            return None, None
        if name not in self.forks:
            return _grad_array(x), None
        source = self._inputs.get(name)
        if source is None:    # not branched (a traced step): x is the model's own, its gradient the whole
            return None, _grad_array(x)
        return _grad_array(x), _grad_array(source)

    def clear(self) -> None:
        self.calls, self._inputs = {}, {}


def as_batch(batch) -> tuple:
    """A model file's batch as (X, y) arrays (tensors are unwrapped)."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"each batch must be a pair (X, y), got {type(batch).__name__}")
    return tuple(b.data if isinstance(b, Tensor) else b for b in batch)


def _check_loss(loss) -> None:
    if not isinstance(loss, Tensor):
        raise TypeError(f"loss(pred, target) must return a calcml Tensor, got {type(loss).__name__}")
    if loss.data.size != 1:
        raise ValueError(f"loss(pred, target) must return a scalar, got shape {loss.shape}; "
                         "reduce it with .mean() or .sum()")
    if not loss.requires_grad:
        raise ValueError("the loss does not depend on any parameter: was it computed under cm.no_grad(), "
                         "or from .data arrays instead of tensors?")
