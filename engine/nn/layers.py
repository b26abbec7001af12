"""Layers: Linear, Sequential and the activations, as in PyTorch.

A layer that computes one op of the derivative table (calcml.ops) names it as its class's `op`;
the debugger reads what the layer does to the gradient from that entry. An activation module is
nothing but its op (`class ReLU(Activation): op = ops.RELU`): its forward, its arguments and what the
debugger measures of it all come from the entry.
"""
from __future__ import annotations

import inspect
import math

import numpy as np

from .. import composites, ops
from ..scope import describe_module
from ..ops import LINEAR
from ..tensor import _apply, _lift
from . import init
from .module import Module, Parameter


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features), initialised as PyTorch does."""

    op = LINEAR   # what it computes (without a bias, the matmul alone): its factor is the op's Wᵀ

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float64):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
            self.bias = Parameter(np.empty(out_features, dtype=dtype))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.bias = None

    def forward(self, x):
        x = _lift(x, self.weight)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{describe_module(self)}: matmul {x.shape} @ {(self.in_features, self.out_features)}: "
                f"this layer takes inputs with {self.in_features} features in the last dimension, "
                f"got {x.shape[-1] if x.ndim else 'a scalar'}"
            )
        if self.bias is None:
            return x @ self.weight.T
        return _apply(LINEAR, x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Sequential(Module):
    """Modules applied in order; indexable (`model[0]`), sliceable and iterable."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes modules; argument {i} is a {type(module).__name__}")
            setattr(self, str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> "Sequential":
        setattr(self, str(len(self._modules)), module)
        return self


class Identity(Module):
    def forward(self, x):
        return x


class Activation(Module):
    """An activation: the elementwise op `op` of the derivative table, entry by entry.

    Its arguments are the op's parameters (`op.activation.params`, with their defaults), kept as
    attributes of the same names and passed to the op: `LeakyReLU(0.2).negative_slope == 0.2`."""

    op = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.op is not None:   # what help() and inspect.signature show: the op's parameters
            if getattr(cls.op, "activation", None) is None:
                raise TypeError(f"{cls.__name__}.op must be an activation of the derivative table "
                                f"(an op of calcml.ops with .activation), not {cls.op!r}")
            cls.__signature__ = inspect.Signature(
                [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
                 for name, default in cls.op.activation.params])

    def __init__(self, *args, **kwargs):
        if self.op is None:
            raise TypeError("Activation is a base class: subclass it and set op to an activation op")
        super().__init__()
        try:
            bound = type(self).__signature__.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}(): {error}") from None
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            setattr(self, name, value)

    def forward(self, x):
        op = self.op
        params = op.activation.params
        return _apply(op, _lift(x, None), attrs=tuple(getattr(self, name) for name, _ in params) if params else ())

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name, _ in self.op.activation.params)


class ReLU(Activation):
    op = ops.RELU


class LeakyReLU(Activation):
    op = ops.LEAKY_RELU


class Sigmoid(Activation):
    op = ops.SIGMOID


class Tanh(Activation):
    op = ops.TANH


class Softsign(Activation):
    op = ops.SOFTSIGN


class SiLU(Activation):
    op = ops.SILU


class GELU(Activation):
    op = ops.GELU


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return composites.softmax(_lift(x, None), axis=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


# The activation modules, in the order defined (each is its op), and Softmax.
ACTIVATIONS = (*Activation.__subclasses__(), Softmax)

# Each layer type here that computes one op of the table, by type name (a LayerStats' `type`).
LAYER_OPS = {cls.__name__: cls.op for cls in (Linear, *ACTIVATIONS) if getattr(cls, "op", None) is not None}
