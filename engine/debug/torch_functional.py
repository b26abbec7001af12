"""Activations a PyTorch model applies as functions rather than modules (`F.relu(self.fc1(x))`,
`torch.tanh(h)`, `scores.softmax(-1)`): each call site is a layer of its own in the table, with
the same activation health, chain-rule factors and warnings as an activation module's.

A site is the module whose forward makes the call, the activation, and which of that module's
calls of it this is in one forward pass; its layer is named after them: `relu()` for the first
`F.relu` in the model's own forward, `block.relu()#2` for the second in `block`'s.

Attention computes its softmax inside one fused function (`F.scaled_dot_product_attention`, and
`nn.MultiheadAttention`'s `F.multi_head_attention_forward`). There the function runs as it
would, and its probabilities are computed again beside it, without gradients, from the same
query, key and mask: a softmax site (`attn.softmax()`, type `attention`) with its activation
health and saturation warning, but no gradients of its own (the fused function never makes
the logits). Sites are
found in the first captured forward pass (every module hooked for that pass only), which also
gives the layers their order. From then on a `TorchFunctionMode` is active during the
model's forward only if there are sites (a model of activation modules pays nothing), and only
the modules that make the calls keep hooks. Calls inside an activation module (nn.ReLU calls
F.relu) are that module's layer, and a site first reached after the first pass is not added.
"""
from __future__ import annotations

import inspect
import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .backend import BESIDE, LayerInfo

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


ATTENTION = (F.scaled_dot_product_attention, F.multi_head_attention_forward)
# The most attention probabilities computed again for one call: past it, those of the batch's
# first examples (one example at least).
ATTENTION_ENTRIES = 1 << 24
_MHA = inspect.signature(F.multi_head_attention_forward)


def attention_probabilities(func, args, kwargs):
    """softmax(q·kᵀ·scale + mask) of one call of an ATTENTION function, per head: (..., L, S),
    computed without gradients (in float32 at least)."""
    with torch.no_grad():
        if func is F.multi_head_attention_forward:
            return _mha_probabilities(args, kwargs)
        return _sdpa_probabilities(*args, **kwargs)


def _examples(per_example: int, batch: int) -> int:
    return max(1, min(batch, ATTENTION_ENTRIES // max(per_example, 1)))


def _sdpa_probabilities(query, key, value=None, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                        enable_gqa=False):
    q, k = (t if t.dtype == torch.float64 else t.float() for t in (query, key))
    L, S = q.size(-2), k.size(-2)
    if q.dim() > 2:
        n = _examples(q[0].numel() // q.size(-1) * S, q.size(0))
        q, k = q[:n], k[:n] if k.size(0) == query.size(0) else k
        if attn_mask is not None and attn_mask.dim() == query.dim() and attn_mask.size(0) == query.size(0):
            attn_mask = attn_mask[:n]
    if enable_gqa and q.dim() > 2 and k.size(-3) != q.size(-3):
        k = k.repeat_interleave(q.size(-3) // k.size(-3), dim=-3)
    scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.size(-1)) if scale is None else scale)
    if is_causal:
        scores = scores.masked_fill(~torch.ones(L, S, dtype=torch.bool, device=q.device).tril(), -math.inf)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, -math.inf) if attn_mask.dtype == torch.bool else scores + attn_mask
    return torch.softmax(scores, dim=-1)


def _mha_probabilities(args, kwargs):
    """nn.MultiheadAttention's probabilities: its own function again, asked for the weights of
    every head (need_weights, not averaged) with dropout off."""
    bound = _MHA.bind(*args, **kwargs)
    given = bound.arguments
    query, heads = given["query"], given["num_heads"]
    if query.dim() == 3:   # (L, N, E): the batch is the second axis
        key = given["key"]
        n = _examples(heads * query.size(0) * key.size(0), query.size(1))
        if n < query.size(1):
            for name in ("query", "key", "value"):
                given[name] = given[name][:, :n]
            if given.get("key_padding_mask") is not None:
                given["key_padding_mask"] = given["key_padding_mask"][:n]
            for name in ("attn_mask", "static_k", "static_v"):
                t = given.get(name)
                if t is not None and t.dim() == 3:
                    given[name] = t[:n * heads]
    given.update(need_weights=True, average_attn_weights=False, training=False, dropout_p=0.0)
    weights = F.multi_head_attention_forward(*bound.args, **bound.kwargs)[1]
    return weights if weights.dtype == torch.float64 else weights.float()


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
        self.recording = False   # a step recorded op by op: nothing computed beside the model's own ops

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
        attention = func in ATTENTION
        if not (attention or func in FUNCTIONS) or not self._stack or not self._stack[-1].measured:
            return func(*args, **kwargs)
        described = ("softmax", {"dim": -1}, False) if attention else describe(func, args, kwargs)
        x = args[0] if args else kwargs.get("query" if attention else "input")
        if described is None or not isinstance(x, torch.Tensor):
            return func(*args, **kwargs)
        kind, attrs, inplace = described
        running = self._stack[-1]
        running.counts[kind] = ordinal = running.counts.get(kind, 0) + 1
        key = (running.name, kind, ordinal)
        if self.sites is None:
            name = site_name(*key)
            self._found.append((key, name))
            self._add(name, LayerInfo(name, BESIDE if attention else f"F.{kind}", kind, False,
                                      SimpleNamespace(**attrs)))
        else:
            name = self.sites.get(key)
            if name is None:
                return func(*args, **kwargs)
        if attention:
            output = func(*args, **kwargs)
            if not self.recording:
                try:
                    probabilities = attention_probabilities(func, args, kwargs)
                except Exception:   # (calcml's own computation: the model's step goes on without it)
                    return output
                self._leave(name, probabilities)
            return output
        self._enter(name, x, inplace)
        output = func(*args, **kwargs)
        self._leave(name, output)
        return output
