"""Layers: Linear, Sequential and the activations, as in PyTorch."""
from __future__ import annotations

import math

import numpy as np

from .. import composites
from ..scope import describe_module
from ..ops import LINEAR
from ..tensor import _apply, _lift
from . import init
from .module import Module, Parameter


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features), initialised as PyTorch does."""

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


class ReLU(Module):
    def forward(self, x):
        return _lift(x, None).relu()


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return composites.leaky_relu(_lift(x, None), self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    def forward(self, x):
        return _lift(x, None).sigmoid()


class Tanh(Module):
    def forward(self, x):
        return _lift(x, None).tanh()


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return composites.softmax(_lift(x, None), axis=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


ACTIVATIONS = (ReLU, LeakyReLU, Sigmoid, Tanh, Softmax)
