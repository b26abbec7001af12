"""Activations a PyTorch model applies as functions rather than modules (`F.relu(self.fc1(x))`,
`torch.tanh(h)`, `scores.softmax(-1)`): each call site is a layer of its own in the table, with
the same activation health, chain-rule factors and warnings as an activation module's.

A site is the module whose forward makes the call, the activation, and which of that module's
calls of it this is in one forward pass; its layer is named after them: `relu()` for the first
`F.relu` in the model's own forward, `block.relu()#2` for the second in `block`'s. Sites are
found in the first captured forward pass (every module hooked for that pass only), which also
gives the layers their order. From then on a `TorchFunctionMode` is active during the
model's forward only if there are sites (a model of activation modules pays nothing), and only
the modules that make the calls keep hooks. Calls inside an activation module (nn.ReLU calls
F.relu) are that module's layer, and a site first reached after the first pass is not added.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .backend import LayerInfo

_T = torch.Tensor
# func -> (the derivative table's op, in place)
FUNCTIONS = {
    F.relu: ("relu", False), torch.relu: ("relu", False), _T.relu: ("relu", False),
    F.relu_: ("relu", True), torch.relu_: ("relu", True), _T.relu_: ("relu", True),
    F.leaky_relu: ("leaky_relu", False), F.leaky_relu_: ("leaky_relu", True),
    torch.sigmoid: ("sigmoid", False), _T.sigmoid: ("sigmoid", False),
    torch.sigmoid_: ("sigmoid", True), _T.sigmoid_: ("sigmoid", True),
    torch.tanh: ("tanh", False), _T.tanh: ("tanh", False), torch.tanh_: ("tanh", True), _T.tanh_: ("tanh", True),
    F.silu: ("silu", False), F.gelu: ("gelu", False), F.softsign: ("softsign", False),
    F.elu: ("elu", False), F.elu_: ("elu", True),
    F.softmax: ("softmax", False), torch.softmax: ("softmax", False), _T.softmax: ("softmax", False),
}


def _arg(args, kwargs, position: int, name: str, default):
    return args[position] if len(args) > position else kwargs.get(name, default)


def describe(func, args, kwargs):
    """(op, its parameters, in place) of one call, or None where it is not measured (GELU's tanh
    approximation is a different function)."""
    kind, inplace = FUNCTIONS[func]
    attrs = {}
    if kind == "leaky_relu":
        attrs["negative_slope"] = _arg(args, kwargs, 1, "negative_slope", 0.01)
        inplace = inplace or bool(_arg(args, kwargs, 2, "inplace", False))
    elif kind == "elu":   # F.elu(input, alpha=1.0, inplace=False), F.elu_(input, alpha=1.0)
        attrs["alpha"] = _arg(args, kwargs, 1, "alpha", 1.0)
        inplace = inplace or bool(_arg(args, kwargs, 2, "inplace", False))
    elif kind in ("relu", "silu") and func not in (torch.relu, _T.relu):
        inplace = inplace or bool(_arg(args, kwargs, 1, "inplace", False))
    elif kind == "gelu" and _arg(args, kwargs, 1, "approximate", "none") != "none":
        return None
    elif kind == "softmax":
        attrs["dim"] = _arg(args, kwargs, 1, "dim", None)
    return kind, attrs, inplace


def site_name(parent: str, kind: str, ordinal: int) -> str:
    prefix = f"{parent}." if parent else ""
    return f"{prefix}{kind}()" + (f"#{ordinal}" if ordinal > 1 else "")


class _Running:
    __slots__ = ("name", "counts", "measured")

    def __init__(self, name: str, measured: bool):
        self.name, self.counts, self.measured = name, {}, measured


class FunctionalLayers(TorchFunctionMode):
    """Finds a model's functional activations and captures each call through the backend's
    `enter(name, x, inplace)` and `leave(name, output)` (as its layer hooks do). The backend
    brackets each captured forward pass with begin() and end()."""

    def __init__(self, root, layers: dict, enter, leave, add, enabled: bool = True):
        """`layers`: {id(module): (layer name, activation op or None)} of the backend's layers;
        `add(name, info)`: a site found, with its LayerInfo."""
        super().__init__()
        self._root, self._layers = root, layers
        self._enter, self._leave, self._add = enter, leave, add
        self._names = {id(m): name for name, m in root.named_modules()}
        self.sites: dict | None = None if enabled else {}   # (parent, op, ordinal) -> layer name; None: not looked yet
        self._stack: list = []         # the modules running, innermost last
        self._hooks: list = []
        self._on = False

    def begin(self) -> None:
        if self.sites == {}:
            return
        self._stack, self._on = [], True
        self.__enter__()
        if self.sites is None:   # (hooks added now run from the next call on: the root is pushed here)
            self._found: list = []
            self._hook(m for m in self._root.modules() if m is not self._root)
            self._push(self._root)

    def end(self) -> None:
        if not self._on:
            return
        self._on = False
        self.__exit__(None, None, None)
        self._stack = []
        if self.sites is None:     # the first pass: what was found is what will be captured
            for handle in self._hooks:
                handle.remove()
            self._hooks = []
            self.sites = {key: name for key, name in self._found}
            # the modules that make the calls, and every module inside them (so that a call
            # is counted in the module it is in, as in this pass)
            parents = {parent for (parent, _, _), _ in self._found}
            within = {id(m) for name, parent in self._root.named_modules() if name in parents for m in parent.modules()}
            self._hook(m for m in self._root.modules() if id(m) in within)

    def _hook(self, modules) -> None:
        for m in modules:
            self._hooks.append(m.register_forward_pre_hook(lambda module, args: self._push(module)))
            self._hooks.append(m.register_forward_hook(self._pop, always_call=True))

    def _push(self, module) -> None:
        if self._on:
            layer = self._layers.get(id(module))
            self._stack.append(_Running(self._names.get(id(module), ""), layer is None or layer[1] is None))

    def _pop(self, module, args, output) -> None:
        if self._on and self._stack:
            self._stack.pop()

    # -- each torch function the forward calls ---------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in FUNCTIONS or not self._stack or not self._stack[-1].measured:
            return func(*args, **kwargs)
        described = describe(func, args, kwargs)
        x = args[0] if args else kwargs.get("input")
        if described is None or not isinstance(x, torch.Tensor):
            return func(*args, **kwargs)
        kind, attrs, inplace = described
        running = self._stack[-1]
        running.counts[kind] = ordinal = running.counts.get(kind, 0) + 1
        key = (running.name, kind, ordinal)
        if self.sites is None:
            name = site_name(*key)
            self._found.append((key, name))
            self._add(name, LayerInfo(name, f"F.{kind}", kind, False, SimpleNamespace(**attrs)))
        else:
            name = self.sites.get(key)
            if name is None:
                return func(*args, **kwargs)
        self._enter(name, x, inplace)
        output = func(*args, **kwargs)
        self._leave(name, output)
        return output
