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
from .functional import gelu as _gelu
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
    """z·Φ(z) (the derivative table's gelu op), or with approximate='tanh' PyTorch's tanh
    approximation. That one is a different function, built from tanh and pow: its layer is of the
    class _TanhGELU, which names no op, so the debugger does not measure it as the exact one."""
    op = ops.GELU

    def __new__(cls, approximate: str = "none"):
        if cls is GELU and approximate == "tanh":
            return Module.__new__(_TanhGELU)
        return Module.__new__(cls)

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', not {approximate!r}")
        Module.__init__(self)
        self.approximate = approximate

    def forward(self, x):
        return _gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


GELU.__signature__ = inspect.Signature(
    [inspect.Parameter("approximate", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="none")])


class _TanhGELU(GELU):
    op = None   # not the gelu op's function: an ordinary layer to the debugger


_TanhGELU.__name__ = "GELU"


class ELU(Activation):
    op = ops.ELU


class Softplus(Module):
    """log(1 + e^(βz))/β, and z itself where βz > threshold (PyTorch's, for the same numbers);
    built from the softplus composite, so it has no op of its own in the derivative table."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, x):
        from .functional import softplus
        return softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


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


def _dim(dim: int, ndim: int, what: str) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(f"{what}: dimension {dim} is out of range for a tensor with {ndim} dimensions")
    return dim % ndim


class Flatten(Module):
    """Dimensions start_dim..end_dim merged into one: (N, C, L) -> (N, C·L) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        x = _lift(x, None)
        if x.ndim == 0:
            return x.reshape(1)
        start = _dim(self.start_dim, x.ndim, "Flatten")
        end = _dim(self.end_dim, x.ndim, "Flatten")
        if start > end:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} "
                             f"for a tensor of shape {x.shape}")
        return x.reshape(*x.shape[:start], math.prod(x.shape[start:end + 1]), *x.shape[end + 1:])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Dimension `dim` split into `unflattened_size`: Unflatten(1, (2, 5)) takes (N, 10) to (N, 2, 5)."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, x):
        x = _lift(x, None)
        dim = _dim(self.dim, x.ndim, "Unflatten")
        sizes = list(self.unflattened_size)
        known = math.prod(n for n in sizes if n != -1)
        if sizes.count(-1) == 1 and known and x.shape[dim] % known == 0:
            sizes[sizes.index(-1)] = x.shape[dim] // known
        if math.prod(sizes) != x.shape[dim] or sizes.count(-1) > 1:
            raise ValueError(f"Unflatten: dimension {self.dim} of shape {x.shape} has {x.shape[dim]} entries, "
                             f"which cannot be split into {self.unflattened_size}")
        return x.reshape(*x.shape[:dim], *sizes, *x.shape[dim + 1:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Dropout(Module):
    """Each entry zeroed with probability p while training, the rest scaled by 1/(1 − p); the
    identity in eval mode. The mask is drawn from calcml's generator (cm.manual_seed)."""
    # what the layer multiplies the gradient by (the inspector's chain-rule panel)
    factor_note = "its mask: ×1/(1−p) on the kept units, 0 on the dropped"

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p is a probability between 0 and 1, got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, x):
        from .functional import dropout
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class ModuleList(Module):
    """A list of modules, registered so that their parameters are the model's (model.layers[2])."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _index(self, index: int) -> str:
        n = len(self._modules)
        if not -n <= index < n:
            raise IndexError(f"ModuleList index {index} is out of range for {n} modules")
        return str(index % n)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return self._modules[self._index(index)]

    def __setitem__(self, index: int, module: Module) -> None:
        setattr(self, self._index(index), _checked(module, "ModuleList"))

    def __delitem__(self, index) -> None:
        modules = list(self._modules.values())
        del modules[index]
        for key in list(self._modules):
            delattr(self, key)
        self.extend(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> "ModuleList":
        setattr(self, str(len(self._modules)), _checked(module, "ModuleList"))
        return self

    def extend(self, modules) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        modules = list(self._modules.values())
        modules.insert(index, _checked(module, "ModuleList"))
        for key in list(self._modules):
            delattr(self, key)
        self.extend(modules)


class ModuleDict(Module):
    """A dict of modules by name, registered so that their parameters are the model's."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ModuleDict keys are non-empty strings without '.', got {key!r}")
        setattr(self, key, _checked(module, "ModuleDict"))

    def __delitem__(self, key: str) -> None:
        if key not in self._modules:
            raise KeyError(key)
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key: str) -> Module:
        module = self[key]
        del self[key]
        return module

    def clear(self) -> None:
        for key in list(self._modules):
            del self[key]

    def update(self, modules) -> None:
        items = modules.items() if hasattr(modules, "items") else modules
        for key, module in items:
            self[key] = module


def _checked(module, container: str) -> Module:
    if not isinstance(module, Module):
        raise TypeError(f"{container} holds modules, not a {type(module).__name__}")
    return module

# Each layer type here that computes one op of the table, by type name (a LayerStats' `type`).
LAYER_OPS = {cls.__name__: cls.op for cls in (Linear, *ACTIVATIONS) if getattr(cls, "op", None) is not None}
