"""One PyTorch training iteration, op by op: what a step-into shows, and where a NaN began.

Forward, a `TorchFunctionMode` sees every torch function the model calls (`linear`, `relu`,
`+=`, `mse_loss`, ...: the level a person writes, not the aten ops beneath) and keeps, for each
whose output joins the graph, the statistics of its output, which layer it ran in, and what its
inputs were (a parameter's name, t<id> of the op that made it, x<n> for data or a constant). Backward, a hook on each of
those ops' autograd nodes receives the gradient arriving at the op's output (upstream) and the
gradients it passes on to each input, in the order autograd runs them. The local factor of each
input comes from the derivative table (calcml.ops) where the op is there; its formulas too.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from .. import ops as _ops
from .tracesummary import ArrayStats, Location, OpSummary, TraceSummary

# torch's names for the table's ops
_ALIASES = {"mm": "matmul", "bmm": "matmul", "iadd": "add", "radd": "add", "isub": "sub", "rsub": "sub",
            "imul": "mul", "rmul": "mul", "truediv": "div", "itruediv": "div", "rtruediv": "div",
            "t": "transpose", "permute": "transpose", "view": "reshape", "flatten": "reshape",
            "expand": "broadcast_to", "relu_": "relu", "tanh_": "tanh", "sigmoid_": "sigmoid", "leaky_relu_": "leaky_relu"}
_TABLE = {op.name: op for op in _ops.PRIMITIVES}
_OP_PARAMS = {"leaky_relu": (("negative_slope", 1, 0.01),)}   # the op's extra arguments: name, position, default
_PASS_THROUGH = ("TBackward0", "ViewBackward0", "TransposeBackward0", "ExpandBackward0", "UnsqueezeBackward0",
                 "SqueezeBackward0", "ReshapeAliasBackward0", "PermuteBackward0")


def op_name(func) -> str:
    name = getattr(func, "__name__", str(func)).strip("_")
    return _ALIASES.get(name, name)


_HALF = (torch.float16, torch.bfloat16)


def host(t):
    """A tensor as a numpy array: a view of it where numpy has its dtype; half precision (fp16,
    bf16, which numpy lacks) as float32, so that its statistics accumulate in float32."""
    t = t.detach()
    return (t.float() if t.dtype in _HALF else t).numpy()


def _numpy(t):
    return host(t.cpu()) if torch.is_tensor(t) else t


def _stats(t):
    return ArrayStats.of(_numpy(t)) if torch.is_tensor(t) else None


class _Op:
    # inputs: per tensor argument, the op that made it, or the tensor's id (a parameter, the data)
    __slots__ = ("index", "id", "name", "scope", "module_type", "inputs", "labels", "values", "extra", "out",
                 "value", "kinds")

    def __init__(self, **fields):
        for key, value in fields.items():
            setattr(self, key, value)


class TorchTrace(TorchFunctionMode):
    """Records one forward and backward. `scope()` gives the innermost layer running (the
    backend's module hooks keep it)."""

    def __init__(self, params: dict, scope):
        super().__init__()
        self.param_names = {key: name for key, (name, _) in params.items()}   # id(parameter) -> its name
        self.param_shapes = {key: shape for key, (_, shape) in params.items()}
        self.scope = scope
        self.forward: list = []
        self.backward: list = []
        self._made: dict = {}              # id(output tensor) -> its op
        self._nodes: dict = {}             # autograd node -> its op
        self._keep: list = []              # the outputs, kept alive while the trace is
        self._external: dict = {}          # id(tensor) -> label, for tensors no recorded op made
        self.backward_kinds: list = []     # per backward op: 'nan', 'inf', 'nan and inf' or 

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        node = getattr(out, "grad_fn", None) if torch.is_tensor(out) else None
        if node is None or node in self._nodes:
            return out
        tensors = [a for a in args if torch.is_tensor(a)]
        name, (scope, module_type) = op_name(func), self.scope()
        value = np.array(_numpy(out))   # copies: a later in-place op may overwrite these
        op = _Op(index=len(self.forward), id=len(self.forward) + 1, name=name, scope=scope, module_type=module_type,
                 inputs=[self._made.get(id(t), id(t)) for t in tensors], labels=tuple(self._label(t) for t in tensors),
                 values=[np.array(_numpy(a)) for a in args if torch.is_tensor(a) or isinstance(a, (int, float))],
                 extra=tuple(kwargs.get(k, args[i] if len(args) > i else d) for k, i, d in _OP_PARAMS.get(name, ())),
                 out=ArrayStats.of(value), value=value, kinds=_kinds(value))
        self.forward.append(op)
        self._made[id(out)] = op
        self._nodes[node] = op
        self._keep.append(out)
        node.register_hook(lambda grad_inputs, grad_outputs, op=op, node=node:
                           self._backward(op, node, grad_inputs, grad_outputs))
        return out

    def _label(self, t) -> str:
        if id(t) in self.param_names:
            return self.param_names[id(t)]
        made = self._made.get(id(t))
        if made is not None:
            return f"t{made.id}"
        # data or a constant: a name of its own, not an op's
        return self._external.setdefault(id(t), f"x{len(self._external)}")

    def _source(self, node):
        """What an autograd edge leads to: a parameter's id, an op, or None (a constant)."""
        while node is not None:
            if node in self._nodes:
                return self._nodes[node]
            variable = getattr(node, "variable", None)
            if variable is not None:
                return id(variable)
            if type(node).__name__ in _PASS_THROUGH and node.next_functions:
                node = node.next_functions[0][0]
                continue
            return None
        return None

    def _backward(self, op: _Op, node, grad_inputs, grad_outputs) -> None:
        sources = [self._source(edge) for edge, _ in node.next_functions]
        grads, factors, kinds = [], [], ""
        for i, want in enumerate(op.inputs):   # in the forward inputs' order: an op, or a tensor's id
            slot = next((j for j, s in enumerate(sources) if s is want or (type(s) is int and s == want)), None)
            grad = grad_inputs[slot] if slot is not None and slot < len(grad_inputs) else None
            shape = self.param_shapes.get(want) if type(want) is int else None
            if grad is not None and shape is not None and tuple(grad.shape) != shape:
                grad = grad.T if grad.dim() == 2 and tuple(grad.T.shape) == shape else grad.reshape(shape)   # reached through Wᵀ
            grads.append(_stats(grad))
            if grads[-1] is not None and grads[-1].non_finite and not kinds:
                kinds = _kinds(_numpy(grad))
            factors.append(self._factor(op, i) if grad is not None else None)   # nothing flows to a constant
        self.backward_kinds.append(kinds)
        self.backward.append(OpSummary(
            len(self.forward) + len(self.backward), "backward", op.name, op.id, op.scope, op.module_type,
            op.labels, _formulas(op), upstream=_stats(grad_outputs[0] if grad_outputs else None),
            factors=tuple(factors), grads=tuple(grads)))

    def _factor(self, op: _Op, i: int):
        entry = _TABLE.get(op.name)
        fns = entry.partials or entry.factor if entry is not None else None
        if not fns or i >= len(fns) or fns[i] is None:
            return None
        try:
            with np.errstate(all="ignore"):
                value = fns[i](*op.values[:len(fns)], op.value, *op.extra)
            return ArrayStats.of(value)
        except Exception:   # an op whose torch form takes other arguments than the table's
            return None

    def summary(self) -> TraceSummary:
        forward = tuple(OpSummary(op.index, "forward", op.name, op.id, op.scope, op.module_type, op.labels,
                                  _formulas(op), value=op.out) for op in self.forward)
        return TraceSummary(forward + tuple(self.backward))

    def first_non_finite(self) -> Location | None:
        """The first forward op whose output is not finite, else the first backward op that
        passed on a gradient that is not."""
        for op in self.forward:
            if op.out is not None and op.out.non_finite:
                return _location("forward", op.name, op.scope, op.index, op.out, op.kinds)
        for b, kinds in zip(self.backward, self.backward_kinds):
            for g in b.grads:
                if g is not None and g.non_finite:
                    return _location("backward", b.op, b.scope, b.index, g, kinds)
        return None


def _kinds(a) -> str:
    a = np.asarray(a)
    if a.dtype.kind not in "fc" or np.isfinite(a).all():
        return ""
    return " and ".join(k for k, n in (("nan", np.isnan(a).any()), ("inf", np.isinf(a).any())) if n)


def _formulas(op: _Op) -> tuple:
    entry = _TABLE.get(op.name)
    if entry is not None:
        return tuple(entry.formulas[:max(len(op.labels), 1)])
    return tuple(f"∂{op.name}/∂{label}: PyTorch's own derivative" for label in op.labels) or (f"{op.name}",)


def _location(phase, op, scope, index, stats, kinds) -> Location:
    size = int(np.prod(stats.shape)) if stats.shape else 1
    return Location(phase, op, scope or None, index, stats.non_finite, size, kinds)
