"""PyTorch as a debugger backend (see backend.py for the interface).

Layers are chosen as for the calcml engine: modules that own parameters directly, and leaf
modules, in the order `named_modules` gives. One forward pre-hook and one forward hook per layer
(registered once, active only while a step is captured) keep each call's input and output; a
tensor hook on each keeps the gradient that reaches it. Tensor hooks, not full backward hooks:
those fail on in-place ops (`nn.ReLU(inplace=True)`, `x += shortcut`). A hook registered before
an in-place op receives the gradient with respect to the value before it, which is the value
this layer made; and an in-place layer's input is copied before the layer overwrites it.

A layer whose input also goes elsewhere (a residual block's first layer, q, k and v reading one
x) is a fork: its input's gradient is its own share plus the other paths'. To measure the share
its pre-hook hands it `x.view_as(x)` (the same values), whose gradient is the share while x's is
the whole. The first captured step does so for every layer (not in-place ones, and not in a
compiled model) and keeps as forks those whose share is not the whole; later steps only for those.

Arrays handed to the quantities are numpy views of the tensors (no copy on the CPU). The
regulariser's gradient is added to `.grad` before the optimiser step, and the curvature comes
from exact Hessian-vector products (double backward), through the same Lanczos and Hutchinson
estimators as the calcml engine's, so both backends give the same numbers on the same model.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext

import numpy as np
import torch

from .. import curvature as _curvature
from . import batchnoise, curvatureprobe
from .backend import MODEL_ERRORS, Backend, Capture, LayerInfo, ModelError, ParamGroups, ParamInfo, StepRecord
from .snapshot import CurvatureStats
from .torch_functional import FunctionalLayers
from .torch_trace import TorchTrace, host
from .tracesummary import Location, TraceSummary

# torch's activation modules, as the derivative table's op names (calcml.ops)
ACTIVATIONS = {torch.nn.ReLU: "relu", torch.nn.LeakyReLU: "leaky_relu", torch.nn.Sigmoid: "sigmoid",
               torch.nn.Tanh: "tanh", torch.nn.Softsign: "softsign", torch.nn.SiLU: "silu",
               torch.nn.ELU: "elu", torch.nn.Softmax: "softmax", torch.nn.Dropout: "dropout"}


def activation_kind(module) -> str | None:
    """The derivative table's op a torch activation module applies (None for GELU's tanh
    approximation: a different function)."""
    if isinstance(module, torch.nn.GELU):
        return "gelu" if module.approximate == "none" else None
    return ACTIVATIONS.get(type(module))


def is_torch_model(model) -> bool:
    return isinstance(model, torch.nn.Module)


def layer_modules(model) -> list:
    """(name, module) for each layer: modules owning parameters directly, and leaf modules."""
    layers = []
    for name, module in model.named_modules():
        owns = any(True for _ in module.parameters(recurse=False))
        if owns or not any(True for _ in module.children()):
            layers.append((name or "model", module))
    return layers


def off_cpu(model) -> str | None:
    """The device of the first parameter not on the CPU, or None (statistics are computed on
    the CPU for now: a model on a GPU is refused with what to do, not copied step by step)."""
    for p in model.parameters():
        if p.device.type != "cpu":
            return str(p.device)
    return None


OFF_CPU = ("calcml-debug measures PyTorch models on the CPU for now, and this model's parameters are on {}: "
           "move it with model.to('cpu') (and its data) to debug it")


class TorchBackend(ParamGroups, Backend):
    def __init__(self, model, loss, optimizer):
        device = off_cpu(model)
        if device is not None:
            raise ValueError(OFF_CPU.format(device))
        self.model, self.loss_fn, self.optimizer = model, loss, optimizer
        # a torch.compile'd or DistributedDataParallel model: its layers and parameters by the
        # names of the model it wraps
        named = getattr(model, "_orig_mod", model)
        if isinstance(named, torch.nn.parallel.DistributedDataParallel):
            named = named.module
        self._named = named
        self.modules = layer_modules(named)
        self._params = [(name, p) for name, p in named.named_parameters() if p.requires_grad]
        layer_of = {id(p): (layer, short) for layer, module in self.modules
                    for short, p in module.named_parameters(recurse=False)}
        owner = [layer_of.get(id(p), (name.rpartition(".")[0] or "model", name)) for name, p in self._params]
        with_params = {layer for layer, _ in owner}
        self._param_info = [ParamInfo(name, tuple(p.shape), layer, short, p.numel())
                            for (name, p), (layer, short) in zip(self._params, owner)]
        self._layer_info = [LayerInfo(name, type(module).__name__, activation_kind(module),
                                      name in with_params, module) for name, module in self.modules]
        self.optimizer_name = type(optimizer).__name__
        self._needs_closure = isinstance(optimizer, torch.optim.LBFGS)
        self._capturing = False
        self._placed = False
        self.observing = False
        self._calls: dict = {}
        self._grads_in: dict = {}
        self._grads_out: dict = {}
        self._made: dict = {}    # id(a layer's output) -> (that layer, the tensor's version then)
        self._same: dict = {}    # layer -> (the layer whose output is its input, unchanged; that call)
        self._grads_whole: dict = {}  # a layer handed a view of its input -> ∂L/∂input over every path
        self._branched: set = set()   # the layers handed a view of their input this step
        self._forks: set = set()      # the layers found to be forks
        self._finding_forks = True    # until a step has branched every layer
        self._first_capture = True
        self._overwritten: set = set()  # the layers whose output a later in-place op changes
        self._versions: dict = {}       # layer -> (its output, the output's version when it was made)
        self._branching = not hasattr(model, "_orig_mod")
        self._count = 0          # calls seen this step (each layer call is numbered)
        self._grad_views: dict = {}   # name -> (the .grad tensor, its numpy view)
        self._dtype = next((p.dtype for _, p in self._params if p.is_floating_point()), torch.get_default_dtype())
        eager = _eager if hasattr(model, "_orig_mod") else (lambda hook: hook)   # (its cost, only where needed)
        for name, module in self.modules:
            module.register_forward_pre_hook(eager(self._before(name, module)), with_kwargs=True)
            module.register_forward_hook(eager(self._after(name)))
        # Found in the first captured forward pass: activations applied as functions, and the
        # second and later calls of a layer in one pass (each a layer of its own: `name@2`).
        self._finding = True
        self._found: dict = {}        # name -> LayerInfo of each layer found
        self._order: list = []        # the layers in the order they first ran
        self._repeats: set = set()    # the names of repeated calls kept
        self._ordinal: dict = {}      # layer -> its calls so far in this forward pass
        self._open: dict = {}         # layer -> the name its call under way is captured by (None: not)
        self._depth = 0
        self._functional = FunctionalLayers(
            named, {id(module): (info.name, info.activation) for info, (_, module) in zip(self._layer_info, self.modules)},
            self._enter, self._leave, self._found.__setitem__,
            enabled=not hasattr(model, "_orig_mod"))   # (a function mode would break a compiled graph)
        # An observed step's last forward pass, to run again recorded if it turns out not finite:
        # (its inputs, the RNG state it began with, the gradient the loss sent back into its output)
        self._pass: list | None = None
        self._observed_curvature = None   # (step, CurvatureStats or ModelError, seconds it took)
        named.register_forward_pre_hook(eager(self._pass_begins), with_kwargs=True)
        named.register_forward_hook(eager(self._pass_ends), always_call=True)

    def _pass_begins(self, module, args, kwargs) -> None:
        if self._capturing:
            self._depth += 1
            if self._depth == 1:
                self._ordinal = {}
                self._functional.begin()
                if self.observing:
                    self._pass = [args, kwargs, torch.random.get_rng_state(), None]

    def _pass_ends(self, module, args, output) -> None:
        if self._depth:
            self._depth -= 1
            if self._depth == 0:
                self._functional.end()
                self._finding = False
                kept = self._pass
                if kept is not None and isinstance(output, torch.Tensor) and output.requires_grad:
                    output.register_hook(lambda g: kept.__setitem__(3, g))

    # -- capturing each layer's call --------------------------------------------------------
    def _before(self, name, module):
        inplace = bool(getattr(module, "inplace", False))

        def hook(module, args, kwargs):
            if not self._capturing:
                return
            calls = self._ordinal[name] = self._ordinal.get(name, 0) + 1
            call = name if calls == 1 else self._repeat(name, calls)
            self._open[name] = call
            # the input: the first argument, or the first keyword's (layer(input=x), attn(query=h, ...))
            x = args[0] if args else next(iter(kwargs.values()), None)
            if call is not None and isinstance(x, torch.Tensor):
                # x in several arguments (self-attention's query, key and value) is handed the
                # same view in each: its gradient is then the layer's whole share of x's, and the
                # layer a fork only where x also goes elsewhere (a residual shortcut)
                view = self._enter(call, x, inplace, can_branch=True)
                if view is not None:
                    return (tuple(view if a is x else a for a in args),
                            {key: view if a is x else a for key, a in kwargs.items()})
        return hook

    def _repeat(self, name: str, calls: int) -> str | None:
        """The name of a layer's later call in one forward pass, if it is kept."""
        call = f"{name}@{calls}"
        if self._finding:
            info = next(i for i in self._layer_info if i.name == name)
            self._found[call] = info._replace(name=call, has_params=False)
            self._repeats.add(call)
        return call if call in self._repeats else None

    def _after(self, name):
        def hook(module, args, output):
            if isinstance(output, tuple) and output:   # (output, extras): nn.MultiheadAttention, nn.LSTM
                output = output[0]
            if self._capturing and isinstance(output, torch.Tensor):
                call = self._open.get(name, name)
                if call is not None:
                    self._leave(call, output)
        return hook

    def _enter(self, name: str, x, inplace: bool, can_branch: bool = False):
        """A layer's call begins, on input x (copied first if the layer overwrites it). Returns
        the view of x to hand the layer instead, where its own share of ∂L/∂x is measured."""
        # Micro-batches before one optimiser step (gradient accumulation): the last one's
        # calls are kept; every hook below keeps what it receives only while its call is the
        # layer's latest.
        if self._finding and name not in self._calls:
            self._order.append(name)
        self._count += 1
        call = self._count
        branch = (can_branch and not inplace and self._branching and x.requires_grad and torch.is_grad_enabled()
                  and (self._finding_forks or name in self._forks))
        made = self._made.get(id(x))
        if made is not None and made[1] == x._version:
            # another layer's output, unchanged since: the gradient its hook receives is this one
            self._same[name] = (made[0], made[2])
        else:
            self._same.pop(name, None)
            if x.requires_grad:
                whole = self._grads_whole if branch else self._grads_in
                x.register_hook(lambda g: self._keep(whole, name, call, g))
        if not branch:
            self._branched.discard(name)
            self._calls[name] = [x.detach().clone() if inplace else x, None, call]
            return None
        self._branched.add(name)
        view = x.view_as(x)
        view.register_hook(lambda g: self._keep(self._grads_in, name, call, g))
        self._calls[name] = [view, None, call]
        return view

    def _leave(self, name: str, output) -> None:
        if self._finding and name not in self._calls:
            self._order.append(name)
        entry = self._calls.setdefault(name, [None, None, 0])
        if entry[2] == 0:        # a call the pre-hook did not see (no tensor input)
            self._count += 1
            entry[2] = self._count
        call = entry[2]
        if output.requires_grad:
            output.register_hook(lambda g: self._keep(self._grads_out, name, call, g))
        # an output a later in-place op changes (`out += h`, a ReLU(inplace=True) after it) is kept
        # as a copy: the first step copies every output and finds which
        copy = self._first_capture or name in self._overwritten
        entry[1] = output.detach().clone() if copy else output
        self._versions[name] = (output, output._version)
        self._made[id(output)] = (name, output._version, call)

    def _keep(self, grads: dict, name: str, call: int, g) -> None:
        entry = self._calls.get(name)
        if entry is not None and entry[2] == call:
            grads[name] = g

    # -- what the model is ------------------------------------------------------------------
    def parameters(self) -> list:
        return self._param_info

    def layers(self) -> list:
        """The layers: after the first captured step, in the order that step ran them (any it
        did not run after), with the ones it found (a new list then)."""
        if self._order and not self._finding and not self._placed:
            self._placed = True
            by_name = {info.name: info for info in self._layer_info} | self._found
            ran = set(self._order)
            layers = [by_name[name] for name in self._order] + [i for i in self._layer_info if i.name not in ran]
            if layers != self._layer_info:
                self._layer_info = layers
        return self._layer_info

    def as_batch(self, batch) -> tuple:
        """A batch as (X, y) tensors: arrays become tensors, floating inputs in the model's dtype."""
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"each batch must be a pair (X, y), got {type(batch).__name__}")
        return tuple(self._tensor(b) for b in batch)

    def _tensor(self, value):
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        return t.to(self._dtype) if t.is_floating_point() and t.dtype != self._dtype else t

    # -- one step ---------------------------------------------------------------------------
    def step(self, batch, traced: bool = False) -> StepRecord:
        X, y = batch
        self._reset()
        self._capturing = True
        branching = self._branching
        self._branching = branching and not traced   # a step-into records the model's own ops only
        recorded = self._trace() if traced else None
        try:
            with recorded if traced else nullcontext():
                loss = self.loss_fn(self.model(X), y)
            _check_loss(loss)
            self.optimizer.zero_grad()
            loss.backward()
        except MODEL_ERRORS as error:
            raise ModelError("loss", error) from None
        finally:
            self._capturing = False
            self._branching = branching
            if recorded is not None:
                recorded.close()
        captures = self._captures()
        self._reset()
        summary = recorded.summary() if traced else None
        return StepRecord(float(loss.detach()), self.grads(), captures, batch, summary, recorded)

    # -- observed: the user's own loop trains ------------------------------------------------
    def observe(self) -> None:
        """From now on every forward pass is captured (the user's loop runs them); a step's
        captures are read at its optimiser step, by observed_record."""
        self.observing = True
        self._capturing = True
        self._reset()

    def stop_observing(self) -> None:
        self.observing = False
        self._capturing = False
        self._reset()

    def _reset(self) -> None:
        self._calls, self._grads_in, self._grads_out, self._made, self._same = {}, {}, {}, {}, {}
        self._grads_whole, self._branched, self._versions = {}, set(), {}
        self._ordinal, self._open = {}, {}
        self._count = 0
        self._grad_views = {}    # (only this step's: the last step's gradients are let go)

    def observed_record(self, loss, grad_scale: float = 1.0) -> StepRecord:
        """The step the user's loop is about to apply: what was captured since the last one,
        the gradients as they are now (accumulated over any micro-batches), and the loss.
        `grad_scale`: AMP's loss scale, by which the layers' captured gradients are divided (the
        parameters' gradients have been unscaled by GradScaler already)."""
        captures = self._captures()
        if grad_scale != 1.0:
            inverse = 1.0 / grad_scale
            captures = {name: c._replace(grad_x=None if c.grad_x is None else c.grad_x * inverse,
                                         grad_out=None if c.grad_out is None else c.grad_out * inverse,
                                         grad_x_total=None if c.grad_x_total is None else c.grad_x_total * inverse)
                        for name, c in captures.items()}
        self._reset()
        value = float(loss.detach()) if torch.is_tensor(loss) and loss.numel() == 1 else math.nan
        return StepRecord(value, self.grads(), captures, None)

    def _captures(self) -> dict:
        if not self._calls:     # nothing captured yet (a watched loop's step before its first captured pass)
            return {}
        self._finding = False   # (also for a model whose forward passes do not go through its root)
        captures = {}
        # one array per tensor: a layer's output is the next one's input, and often its gradient
        # the next one's input gradient, so a statistic the session keeps per array (a norm) is
        # computed once for both
        views: dict = {}

        def array(t):
            if t is None:
                return None
            a = views.get(id(t))
            if a is None:
                a = views[id(t)] = host(t)
            return a
        finding = self._finding_forks and bool(self._branched)
        for name, (x, out, _) in self._calls.items():
            if out is None:
                continue
            branched = name in self._branched
            whole = self._grads_whole.get(name) if branched else self._grads_in.get(name)
            if whole is None and name in self._same:
                source, source_call = self._same[name]
                if self._calls.get(source, (None, None, -1))[2] == source_call:   # that call's gradient
                    whole = self._grads_out.get(source)
            own = self._grads_in.get(name) if branched else None
            if finding and own is not None and whole is not None and not torch.equal(own, whole):
                self._forks.add(name)
            if name in self._forks:
                grad_x, total = own, whole
            else:
                grad_x, total = own if own is not None else whole, None
            captures[name] = Capture(array(x), array(out), array(grad_x), array(self._grads_out.get(name)),
                                     1 if out.dim() in (4, 5) else -1,   # N×C×H×W(×D): a unit is a channel
                                     array(total))
        if finding:
            self._finding_forks = False
        if self._first_capture:
            self._first_capture = False
            self._overwritten = {name for name, (output, version) in self._versions.items()
                                 if output._version != version}
        return captures

    def _trace(self) -> "_Traced":
        return _Traced(self._named, {id(p): (name, tuple(p.shape)) for name, p in self._params}, self._functional)

    def add_penalty(self, regularizer) -> tuple:
        penalty_grads, penalty = {}, 0.0
        try:   # a regulariser's `select` is the model file's code
            for name, p in self._params:
                if not regularizer.applies_to(name, p):
                    continue
                values = host(p)
                g = regularizer.gradient(values)
                penalty_grads[name] = g
                penalty += regularizer.total(values)
                if p.grad is not None:   # a new tensor: the record's data gradients stay as they were
                    p.grad = p.grad + torch.from_numpy(np.asarray(g, dtype=values.dtype)).to(p.grad.dtype)
        except MODEL_ERRORS as error:
            raise ModelError("regularizer", error) from None
        return penalty_grads, regularizer.lam * penalty

    def grads(self) -> dict:
        """{name: a numpy view of `.grad`}: the same view object for as long as `.grad` is the same
        tensor, so that the quantities see the gradient the optimiser uses *is* the data loss's
        (no penalty added) and measure it once."""
        out, views = {}, self._grad_views
        for name, p in self._params:
            g = p.grad
            if g is None:
                out[name] = None
                continue
            seen = views.get(name)
            if seen is None or seen[0] is not g:
                seen = views[name] = (g, host(g))
            out[name] = seen[1]
        return out

    def weights(self) -> dict:
        return {name: host(p) for name, p in self._params}

    def apply_update(self, record: StepRecord, regularizer) -> None:
        try:
            if self._needs_closure:
                self.optimizer.step(lambda: self._closure(record.batch, regularizer))
            else:
                self.optimizer.step()
        except MODEL_ERRORS as error:
            raise ModelError("optimizer", error) from None

    def _objective(self, batch, regularizer):
        """The loss on a batch, through the model eager (a compiled graph has no double backward)."""
        X, y = batch
        loss = self.loss_fn(getattr(self.model, "_orig_mod", self.model)(X), y)
        if regularizer is not None:
            loss = loss + self._penalty(regularizer)
        return loss

    def _penalty(self, regularizer):
        """The regulariser as a torch expression (for closures and curvature)."""
        term = {"L2": lambda p: (p * p).sum(), "L1": lambda p: p.abs().sum()}[regularizer.kind]
        total = sum((term(p) for name, p in self._params if regularizer.applies_to(name, p)),
                    torch.zeros((), dtype=self._dtype))
        return regularizer.lam * total

    # -- the optimiser (lr, set_lr and the closure: ParamGroups) --------------------------------
    def effective_lr(self, name: str) -> float | None:
        """Adam and AdamW: the median over the entries of η/(√v̂+ε), as of the last step."""
        if not isinstance(self.optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            return None
        p = dict(self._params)[name]
        state = self.optimizer.state.get(p)
        if not state or "exp_avg_sq" not in state:
            return None
        group = next(g for g in self.optimizer.param_groups if any(q is p for q in g["params"]))
        beta2, step = group["betas"][1], float(state["step"])
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        per_entry = group["lr"] / (v.sqrt() / math.sqrt(1 - beta2 ** step) + group["eps"])
        return float(np.median(host(per_entry)))   # numpy's median: torch's takes the lower middle

    # -- measurements that re-evaluate the model -------------------------------------------------
    def curvature(self, record: StepRecord, regularizer, step: int, iters: int, samples: int, seed: int):
        if record.batch is None:   # an observed step: measured at its backward, or not at all
            measured, self._observed_curvature = self._observed_curvature, None
            if measured is None or measured[0] != step:
                return None
            if isinstance(measured[1], ModelError):
                raise measured[1]
            self.curvature_cost, stats = measured[2], measured[1]
            return stats
        try:
            with torch.enable_grad():
                objective = self._objective(record.batch, regularizer)
        except MODEL_ERRORS as error:
            raise ModelError("curvature", error) from None
        return self._curvature_of(objective, step, iters, samples, seed)

    def measure_curvature_at_backward(self, loss, regularizer, step: int, iters: int, samples: int, seed: int) -> None:
        """An observed step's curvature, from the loss its loop is about to call backward() on
        (the graph is still whole then; its backward frees it): kept for curvature(record, ...)
        of that step. (The loop's loss function is not known, so this is the only time.)"""
        started = time.perf_counter()
        try:
            objective = loss if regularizer is None else loss + self._penalty(regularizer)
            measured = self._curvature_of(objective, step, iters, samples, seed)
        except ModelError as failure:
            measured = failure
        self._observed_curvature = (step, measured, time.perf_counter() - started)

    def _curvature_of(self, objective, step: int, iters: int, samples: int, seed: int) -> CurvatureStats:
        try:
            with torch.enable_grad():
                op = HessianOperator(objective, [p for _, p in self._params])
            lam = float(_curvature.lanczos(op, k=1, iters=iters, tol=1e-6, seed=seed)[0])
            est = _curvature.hutchinson(op, samples=samples, seed=seed)
        except MODEL_ERRORS as error:
            raise ModelError("curvature", error) from None
        edge, formula = curvatureprobe.lr_edge(self.optimizer, lam)
        diag = {name: float(d.mean()) if d.size else math.nan for (name, _), d in zip(self._params, est.diagonal)}
        return CurvatureStats(step=step, lambda_max=lam, trace=est.trace, trace_se=est.trace_se,
                              lr_edge=edge, edge_formula=formula, hessian_diag=diag, n_params=op.n)

    def gradient_noise(self, record: StepRecord, regularizer, samples: int) -> tuple:
        return {}, math.nan, math.nan   # no weight posterior to draw from

    def batch_noise(self, record: StepRecord, groups: int, population: int | None, step: int):
        """Micro-batch gradients through the model eager (the module it wraps: a DDP model's
        backward would wait for the other processes), with torch.autograd.grad, which leaves
        `.grad` alone; the CPU RNG and the buffers (batch-norm statistics) are put back."""
        if record.batch is None:   # an observed step: the loop's loss function is not known
            return None
        params = [p for _, p in self._params]
        buffers = [(b, b.detach().clone()) for b in self._named.buffers()]
        capturing, self._capturing = self._capturing, False

        def gradients(start: int, stop: int) -> list:
            loss = self.loss_fn(self._named(X[start:stop]), y[start:stop])
            _check_loss(loss)
            return [None if g is None else host(g) for g in torch.autograd.grad(loss, params, allow_unused=True)]

        try:
            X, y = record.batch
            with torch.random.fork_rng(devices=[]), torch.enable_grad():
                return batchnoise.measure(gradients, [name for name, _ in self._params],
                                          batchnoise.batch_length((X, y)), groups, population, step)
        except MODEL_ERRORS as error:
            raise ModelError("mini-batch noise", error) from None
        finally:
            self._capturing = capturing
            with torch.no_grad():
                for b, value in buffers:
                    b.copy_(value)

    def validation_loss(self, val_data) -> float:
        Xv, yv = self.as_batch(val_data)
        self.model.eval()
        try:
            with torch.no_grad():
                return float(self.loss_fn(self.model(Xv), yv))
        except MODEL_ERRORS as error:
            raise ModelError("validation", error) from None
        finally:
            self.model.train()

    def predict(self, X):
        modes = [(m, m.training) for m in self.model.modules()]
        buffers = [(b, b.detach().clone()) for b in self._named.buffers()]
        capturing, self._capturing = self._capturing, False
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(torch.as_tensor(np.asarray(X), dtype=self._dtype))
            return host(out).astype(float)
        except MODEL_ERRORS as error:
            raise ModelError("data view", error) from None
        finally:
            self._capturing = capturing
            for module, mode in modes:
                module.training = mode
            with torch.no_grad():
                for b, value in buffers:
                    b.copy_(value)

    def host_batch(self, batch) -> tuple:
        return tuple(host(b) if torch.is_tensor(b) else np.asarray(b) for b in self.as_batch(batch))

    def locate_non_finite(self, record: StepRecord):
        """The first op (forward in order, then backward) whose output or passed-on gradient is
        not finite: from the step's own recording, or the step run again recorded."""
        recorded = record.recorded
        if recorded is None and record.batch is None:   # an observed step
            return self._locate_observed(record)
        if recorded is None:
            recorded = self._trace()
            X, y = record.batch
            try:
                self.optimizer.zero_grad()
                with recorded:
                    loss = self.loss_fn(self.model(X), y)
                loss.backward()
            except MODEL_ERRORS:
                pass
            finally:
                recorded.close()
        return recorded.first_non_finite(), recorded.summary(), recorded


    def _locate_observed(self, record: StepRecord):
        """An observed step's forward pass run again recorded, from the inputs and RNG state it
        had, and backward from the gradient the loss sent into its output (the user's loss
        function is not known, so a gradient already not finite there is the loss's). Buffers,
        the RNG and the gradients are put back as they were. By layer, from the step's captures,
        where it cannot be run again (no pass seen, an output that is not one tensor, DDP, whose
        backward would wait for the other processes)."""
        kept, self._pass = self._pass, None
        ddp = isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
        if kept is None or kept[3] is None or ddp:
            return _first_non_finite_capture(record, [i.name for i in self.layers()]), TraceSummary(()), None
        args, kwargs, rng, grad_out = kept
        buffers = [(b, b.detach().clone()) for b in self._named.buffers()]
        grads = [(p, p.grad) for _, p in self._params]
        recorded = self._trace()
        capturing, self._capturing = self._capturing, False
        try:
            with torch.random.fork_rng(devices=[]), torch.enable_grad():
                torch.random.set_rng_state(rng)
                with recorded:
                    out = self._named(*args, **kwargs)
                if torch.isfinite(out).all():
                    bad = ~torch.isfinite(grad_out)
                    if bad.any():
                        return _loss_side(grad_out, bad), recorded.summary(), recorded
                out.backward(grad_out)
        except MODEL_ERRORS:
            pass
        finally:
            self._capturing = capturing
            recorded.close()
            with torch.no_grad():
                for b, value in buffers:
                    b.copy_(value)
            for p, g in grads:
                p.grad = g
        return recorded.first_non_finite(), recorded.summary(), recorded


def _eager(hook):
    """A hook torch.compile leaves out of its graphs (a graph break there) rather than tracing
    calcml's bookkeeping into them, recompiling for each layer's name."""
    return torch.compiler.disable(hook, recursive=True)


def _loss_side(grad, bad) -> Location:
    """The gradient arriving at the model's output from the loss was not finite already."""
    nan, total = int(torch.isnan(grad).sum()), int(bad.sum())
    kinds = " and ".join(k for k, n in (("nan", nan), ("inf", total - nan)) if n)
    return Location("backward", "loss", None, 0, total, grad.numel(), kinds)


def _first_non_finite_capture(record: StepRecord, order: list):
    """Where an observed step first went non-finite, by layer: the first output in forward
    order, else the first gradient arriving from the loss side."""
    captured = [(name, record.captures[name]) for name in order if name in record.captures]
    for phase, pairs, pick in (("forward", captured, lambda c: c.out),
                               ("backward", reversed(captured), lambda c: c.grad_out)):
        for index, (name, capture) in enumerate(pairs):
            a = pick(capture)
            if a is not None and a.dtype.kind == "f" and not np.isfinite(a).all():
                nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
                kinds = " and ".join(k for k, n in (("nan", nan), ("inf", inf)) if n)
                return Location(phase, "output" if phase == "forward" else "gradient", name, index, nan + inf,
                                a.size, kinds)
    return None


class _Traced(TorchTrace):
    """A TorchTrace that knows which module each op ran in (global module hooks, removed by
    close())."""

    def __init__(self, model, params: dict, functional):
        self.functional = functional   # (FunctionalLayers: it computes nothing of its own while recorded)
        names = {id(m): (name, type(m).__name__) for name, m in model.named_modules() if name}
        stack: list = []

        def enter(module, args) -> None:
            stack.append(names.get(id(module)))

        def leave(module, args, output) -> None:   # returns None: a hook's result would replace the output
            if stack:
                stack.pop()
        self._handles = [torch.nn.modules.module.register_module_forward_pre_hook(enter),
                         torch.nn.modules.module.register_module_forward_hook(leave)]
        super().__init__(params, lambda: next((s for s in reversed(stack) if s is not None), ("", None)))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        self.functional.recording = True
        return super().__enter__()

    def __exit__(self, *exc):
        self.functional.recording = False
        return super().__exit__(*exc)


class HessianOperator(_curvature.FlatVectors):
    """H as a linear map v ↦ H·v at the current θ (the calcml engine's HessianOperator, for
    torch): the gradient built once with create_graph=True, each product one more backward.
    Vectors are flat float64 numpy arrays of length n = Σ p.numel()."""

    def __init__(self, loss, params):
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise ValueError("the objective must be a scalar tensor")
        self.params = params
        self._layout([p.shape for p in params])
        self._grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        self.gradient = self.flatten([None if g is None else host(g) for g in self._grads])

    def matvec(self, v: np.ndarray) -> np.ndarray:
        pieces = self.unflatten(np.asarray(v, dtype=np.float64))
        total = None
        for g, p, piece in zip(self._grads, self.params, pieces):
            if g is None or not g.requires_grad:
                continue
            term = (g * torch.from_numpy(piece).to(p.dtype)).sum()
            total = term if total is None else total + term
        if total is None:
            return np.zeros(self.n)
        hv = torch.autograd.grad(total, self.params, retain_graph=True, allow_unused=True)
        return self.flatten([None if h is None else host(h) for h in hv])

    __matmul__ = matvec


def _check_loss(loss) -> None:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss(pred, target) must return a torch tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"loss(pred, target) must return a scalar, got shape {tuple(loss.shape)}; "
                         "reduce it with .mean() or .sum()")
    if not loss.requires_grad:
        raise ValueError("the loss does not depend on any parameter: was it computed under torch.no_grad(), "
                         "or from .detach()ed tensors?")
