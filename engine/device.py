"""Devices with PyTorch's names: calcml computes with numpy on the CPU, so 'cpu' is the only one.

`cm.device('cpu')`, `cm.cuda.is_available()` (False) and `cm.backends.mps.is_available()` (False)
exist so that the usual `device = "cuda" if torch.cuda.is_available() else "cpu"` runs unchanged.
Asking for a GPU is an error that says where GPU training can be debugged instead.
"""
from __future__ import annotations

import types

__all__ = ["device", "check_device", "cuda", "backends"]

_GPU_TYPES = ("cuda", "mps", "xpu", "hip", "xla", "mtia", "hpu", "ipu", "vulkan", "opengl", "opencl", "meta")


def _no_gpu(what: str) -> RuntimeError:
    return RuntimeError(
        f"calcml runs on the CPU (numpy) and has no {what} device. Drop the device or use 'cpu'; to debug "
        "a model training on a GPU, write it in PyTorch and run it under calcml-debug, whose PyTorch "
        "backend measures it on its device (README: \"Debugging a PyTorch model\").")


class device:
    """A device, as torch.device: `cm.device('cpu')`, `cm.device('cpu:0')`, `str(d) == 'cpu'`."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        if isinstance(type, int) and not isinstance(type, bool):
            raise _no_gpu(f"'cuda:{type}'")  # PyTorch reads a bare integer as a CUDA device index
        if not isinstance(type, str):
            raise TypeError(f"device() takes a string such as 'cpu', got {type.__class__.__name__}")
        name, _, number = type.strip().partition(":")
        if name in _GPU_TYPES:
            raise _no_gpu(repr(type))
        if name != "cpu":
            raise RuntimeError(f"unknown device {type!r}: calcml has one device, 'cpu'")
        if number:
            if index is not None:
                raise RuntimeError(f"device {type!r} has an index already; do not pass index={index}")
            if not number.isdigit():
                raise RuntimeError(f"invalid device string {type!r}: the index after ':' must be a number")
            index = int(number)
        if index is not None and index != 0:
            raise RuntimeError(f"the CPU has one device, index 0; got {index}")
        object.__setattr__(self, "type", "cpu")
        object.__setattr__(self, "index", index)

    def __setattr__(self, name, value):
        raise AttributeError("a device cannot be changed")

    def __eq__(self, other) -> bool:
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"


def check_device(value) -> device:
    """The device a `device=` or `.to(...)` argument names (None: the CPU); a GPU is refused."""
    return device("cpu") if value is None else device(value)


def to_arguments(args, kwargs) -> tuple:
    """(device, dtype) from the arguments of a PyTorch-style `.to(...)`: a device (a name, an
    index, a `device`), a dtype, or a tensor (its dtype), positionally or as device=/dtype=.
    The device is checked (a GPU is refused); either may be None."""
    kwargs = dict(kwargs)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    for ignored in ("non_blocking", "copy", "memory_format"):
        kwargs.pop(ignored, None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    from .tensor import Tensor   # (here: tensor.py imports this module)
    for arg in args:
        if isinstance(arg, Tensor):   # a tensor: its dtype
            dtype = arg.dtype
        elif isinstance(arg, (str, int)) or type(arg).__name__ == "device":
            device = arg
        elif arg is not None:
            dtype = arg
    check_device(device)
    return device, dtype


def _module(name: str, doc: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name, doc)
    module.__dict__.update(attrs)
    return module


def _no_cuda_call(*args, **kwargs):
    raise _no_gpu("CUDA")


def _ignored(*args, **kwargs) -> None:
    """Seeding a GPU that is not there does nothing, as in PyTorch without CUDA."""


cuda = _module(
    "calcml.cuda", "No CUDA: calcml runs on the CPU.",
    is_available=lambda: False, device_count=lambda: 0, is_initialized=lambda: False,
    manual_seed=_ignored, manual_seed_all=_ignored, current_device=_no_cuda_call,
    synchronize=_no_cuda_call, get_device_name=_no_cuda_call, empty_cache=_ignored)

backends = _module(
    "calcml.backends", "Accelerator back ends: none (calcml runs on the CPU).",
    mps=_module("calcml.backends.mps", "No MPS.", is_available=lambda: False, is_built=lambda: False),
    # tutorials set these for repeatable GPU runs; on the CPU there is nothing to configure
    cudnn=_module("calcml.backends.cudnn", "No cuDNN.", is_available=lambda: False,
                  deterministic=False, benchmark=False, enabled=False),
    cuda=_module("calcml.backends.cuda", "No CUDA.", is_built=lambda: False))
