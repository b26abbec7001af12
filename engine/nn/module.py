"""Module and Parameter, with PyTorch's names: a model is a tree of modules owning parameters."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import scope
from ..tensor import Tensor


_structure = [0]  # bumped whenever a module's attributes change: invalidates cached parameter lists


class Parameter(Tensor):
    """A leaf tensor that a Module owns and an optimiser updates (requires_grad by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True, name: str | None = None, dtype=None):
        super().__init__(data.data if isinstance(data, Tensor) else data,
                         requires_grad=requires_grad, name=name, dtype=dtype)

    def __repr__(self) -> str:
        return "Parameter(" + super().__repr__()[len("tensor("):]


class Module:
    """Base class of layers and models: subclasses set attributes in __init__ and define forward."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_scope", None)

    def __setattr__(self, name: str, value) -> None:
        _structure[0] += 1
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before setting {name!r}"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:   # `self.running_mean = ...` replaces the buffer
            if value is not None and not isinstance(value, Tensor):
                value = Tensor(value)
            buffers[name] = value
        elif isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
            _forget_scopes(value)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        _structure[0] += 1
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.get("_buffers", {}).pop(name, None)
        object.__delattr__(self, name)

    # -- running -------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        if self._scope is None:
            _assign_scopes(self)
        recorder = scope.recorder
        if recorder is not None:
            args = recorder.enter(self, args)
        stack = scope._stack
        stack.append(self)
        try:
            output = self.forward(*args, **kwargs)
        finally:
            stack.pop()
        if recorder is not None:
            recorder(self, args, output)
        return output

    # -- the tree ------------------------------------------------------------------
    def named_children(self):
        yield from self._modules.items()

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for this module and every descendant, depth first."""
        stack = [(prefix, self)]
        seen = set()
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items()]
            stack.extend(reversed(children))

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, p in module._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """A tensor the module keeps that is not a parameter (BatchNorm's running mean): it is no
        optimiser's, needs no gradient, and is in state_dict() unless persistent=False."""
        if "_buffers" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before register_buffer({name!r})")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"register_buffer: the name must be a non-empty string without '.', got {name!r}")
        if name in self._parameters or name in self._modules or (
                hasattr(self, name) and name not in self._buffers):
            raise KeyError(f"register_buffer: attribute {name!r} already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        if isinstance(tensor, Parameter):
            raise TypeError(f"register_buffer({name!r}): a buffer is not a Parameter; assign a parameter as "
                            f"an attribute instead")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, b in module.__dict__.get("_buffers", {}).items():
                if b is None or id(b) in seen:
                    continue
                seen.add(id(b))
                yield (f"{module_name}.{name}" if module_name else name), b

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Whether the optimiser's gradients are computed for every parameter (False freezes them)."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # -- modes and state -------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self._parameter_list():
            p.grad = None

    def _parameter_list(self) -> list:
        """parameters() as a list, remembered until any module's attributes change."""
        cached = self.__dict__.get("_cached_parameters")
        if cached is None or cached[0] != _structure[0]:
            cached = (_structure[0], list(self.parameters()))
            object.__setattr__(self, "_cached_parameters", cached)
        return cached[1]

    def apply(self, fn) -> "Module":
        """fn(module) for every descendant, children before their parent (PyTorch's order)."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def _state_tensors(self) -> "OrderedDict[str, Tensor]":
        """Parameters and persistent buffers by dotted name, each module's parameters then its
        buffers (PyTorch's order), a shared tensor once."""
        state, seen = OrderedDict(), set()
        for module_name, module in self.named_modules():
            buffers = module.__dict__.get("_buffers", {})
            skip = module.__dict__.get("_non_persistent", ())
            entries = list(module._parameters.items()) + [(k, b) for k, b in buffers.items() if k not in skip]
            for name, t in entries:
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                state[f"{module_name}.{name}" if module_name else name] = t
        return state

    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Every parameter and persistent buffer by dotted name, as a detached Tensor sharing its
        array (as PyTorch's shares storage): `{k: v.clone() for k, v in ...}` is a snapshot."""
        return OrderedDict((name, t.detach()) for name, t in self._state_tensors().items())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        params = self._state_tensors()
        if strict:
            missing = sorted(set(params) - set(state))
            unexpected = sorted(set(state) - set(params))
            if missing or unexpected:
                raise KeyError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
        for name, value in state.items():
            if name not in params:
                continue
            value = value.data if isinstance(value, Tensor) else np.asarray(value)  # cm.load gives tensors
            if value.shape != params[name].shape:
                raise ValueError(
                    f"load_state_dict: {name} has shape {params[name].shape}, the state has {value.shape}"
                )
            params[name].data[...] = value

    # -- device and dtype (PyTorch's names; calcml has one device, the CPU) -------------------
    def to(self, *args, **kwargs) -> "Module":
        """`model.to('cpu')`, `.to(cm.device('cpu'))`, `.to(cm.float32)`, `.to(tensor)`, or device=/dtype=.

        The device must be the CPU (a GPU is refused with where to go instead); a float dtype
        converts every parameter, as PyTorch's does. Call it before making the optimiser."""
        from ..device import to_arguments
        _, dtype = to_arguments(args, kwargs)
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype not in (np.float32, np.float64):
                raise TypeError(f"Module.to() converts to a float dtype (cm.float32 or cm.float64), not {dtype}")
            for b in self.buffers():   # float buffers follow (an integer count stays an integer)
                if b.data.dtype.kind == "f" and b.data.dtype != dtype:
                    b.data = b.data.astype(dtype)
            for p in self.parameters():
                if p.data.dtype != dtype:
                    p.data = p.data.astype(dtype)
                    grad = p.grad  # an array or a Tensor, whichever the engine keeps
                    p.grad = None if grad is None else np.asarray(getattr(grad, "data", grad)).astype(dtype)
        return self

    def cpu(self) -> "Module":
        return self

    def cuda(self, device=None) -> "Module":
        from ..device import check_device
        check_device("cuda")  # raises: calcml runs on the CPU
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    # -- display -----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


def _forget_scopes(module: Module) -> None:
    for m in module.modules():
        object.__setattr__(m, "_scope", None)


def _assign_scopes(module: Module) -> None:
    """Name every module (and parameter) of the model this call belongs to.

    Called on a module's first call: the outermost module running is the model, so names
    are relative to it ('layers.2'); parameters get their dotted names ('layers.2.weight').
    """
    root = scope.outermost_module() or module
    for name, m in root.named_modules():
        object.__setattr__(m, "_scope", name)
    for name, p in root.named_parameters():
        if p.name is None:
            p.name = name
    if module._scope is None:  # called inside a model without being one of its attributes
        object.__setattr__(module, "_scope", "")
