"""Convolution and pooling over image batches (N, C, H, W), with PyTorch's names, signatures,
defaults and initialisation: Conv1d, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and their
functional forms. Conv and pooling are ops of the derivative table (calcml.ops: conv2d,
max_pool2d, avg_pool2d, each through im2col or a strided window view); Conv1d is Conv2d with
H = 1, and the adaptive average is two matmuls with averaging matrices (any output size).
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..scope import describe_module
from ..tensor import Tensor, _apply, _lift
from . import init
from .module import Module, Parameter


def _pair(name: str, value, what: str, minimum: int) -> tuple:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= minimum for v in pair):
        raise ValueError(f"{name}: {what} must be an int or a pair of ints ≥ {minimum}, got {value!r}")
    return tuple(int(v) for v in pair)


def _image(name: str, x, dims: int = 4) -> Tensor:
    x = _lift(x, None)
    if x.ndim != dims:
        layout = "(N, C, H, W)" if dims == 4 else "(N, C, L)"
        raise ValueError(f"{name}: expects a batch of shape {layout}, got {x.shape} (an unbatched input: "
                         f"add the batch dimension with x.reshape(1, *x.shape))")
    return x


def _same_padding(name, kernel, dilation, stride):
    if stride != (1, 1):
        raise ValueError(f"{name}: padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    if any(t % 2 for t in total):   # PyTorch pads such kernels unevenly; one symmetric padding cannot
        raise ValueError(f"{name}: padding='same' with an even kernel extent {kernel} (dilation {dilation}) "
                         f"needs uneven padding, which calcml does not do: pad by hand or use an odd kernel")
    return tuple(t // 2 for t in total)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """The 2-D cross-correlation of (N, C, H, W) with weight (O, C, kh, kw), plus bias (O,), as
    torch.nn.functional.conv2d."""
    if groups != 1:
        raise ValueError(f"conv2d: groups={groups} is not supported, only groups=1 (every output channel "
                         f"reads every input channel)")
    x = _image("conv2d", input)
    weight = _lift(weight, x)
    if weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"conv2d: weight of shape {weight.shape} for an input of {x.shape[1]} channels: "
                         f"it must be (out_channels, {x.shape[1]}, kh, kw)")
    stride = _pair("conv2d", stride, "stride", 1)
    dilation = _pair("conv2d", dilation, "dilation", 1)
    kernel = weight.shape[2:]
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        padding = _same_padding("conv2d", kernel, dilation, stride)
    else:
        padding = _pair("conv2d", padding, "padding", 0)
    for axis, (n, p, k, d) in enumerate(zip(x.shape[2:], padding, kernel, dilation)):
        if n + 2 * p < d * (k - 1) + 1:
            raise ValueError(f"conv2d: the input's {'HW'[axis]} = {n} (padded to {n + 2 * p}) is smaller than "
                             f"the kernel's extent {d * (k - 1) + 1}")
    out = _apply(ops.CONV2D, x, weight, attrs=(stride, padding, dilation))
    if bias is not None:
        out = out + _lift(bias, x).reshape(1, -1, 1, 1)
    return out


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """The 1-D cross-correlation of (N, C, L) with weight (O, C, k): conv2d with H = 1."""
    x = _image("conv1d", input, 3)
    weight = _lift(weight, x)
    if weight.ndim != 3:
        raise ValueError(f"conv1d: weight must be (out_channels, in_channels, k), got {weight.shape}")
    pad = padding if isinstance(padding, str) else (0, _single("conv1d", padding, "padding"))
    out = conv2d(x.reshape(x.shape[0], x.shape[1], 1, x.shape[2]),
                 weight.reshape(weight.shape[0], weight.shape[1], 1, weight.shape[2]), bias,
                 (1, _single("conv1d", stride, "stride")), pad, (1, _single("conv1d", dilation, "dilation")), groups)
    return out.reshape(out.shape[0], out.shape[1], out.shape[3])


def _single(name, value, what):
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name}: {what} must be an int or a 1-tuple, got {value!r}")
        value = value[0]
    return value


def _pool_args(name, x, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    kernel = _pair(name, kernel_size, "kernel_size", 1)
    stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else \
        _pair(name, stride, "stride", 1)
    padding = _pair(name, padding, "padding", 0)
    if dilation not in (1, (1, 1)):
        raise ValueError(f"{name}: dilation={dilation!r} is not supported, only 1")
    if ceil_mode:
        raise ValueError(f"{name}: ceil_mode=True is not supported: windows start at 0 and the last "
                         f"partial one is dropped (ceil_mode=False)")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel {kernel} (as in PyTorch)")
    for axis, (n, p, k) in enumerate(zip(x.shape[2:], padding, kernel)):
        if n + 2 * p < k:
            raise ValueError(f"{name}: the input's {'HW'[axis]} = {n} (padded to {n + 2 * p}) is smaller "
                             f"than the kernel {k}")
    return kernel, stride, padding


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor:
    """Each window's maximum; its gradient goes to the window's (first) maximum."""
    if return_indices:
        raise ValueError("max_pool2d: return_indices=True is not supported")
    x = _image("max_pool2d", input)
    attrs = _pool_args("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    return _apply(ops.MAXPOOL2D, x, attrs=attrs)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    """Each window's mean (padding counts as zeros in it, PyTorch's default)."""
    if not count_include_pad or divisor_override is not None:
        raise ValueError("avg_pool2d: only count_include_pad=True and divisor_override=None are supported")
    x = _image("avg_pool2d", input)
    attrs = _pool_args("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    return _apply(ops.AVGPOOL2D, x, attrs=attrs)


def _averaging(n_in: int, n_out: int, dtype) -> np.ndarray:
    """(n_out, n_in): row i averages PyTorch's adaptive window floor(i·n/m) .. ceil((i+1)·n/m)."""
    a = np.zeros((n_out, n_in), dtype=dtype)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        a[i, start:end] = 1.0 / (end - start)
    return a


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """The mean over PyTorch's adaptive windows, for any output size: separable, so A_h x A_wᵀ."""
    x = _image("adaptive_avg_pool2d", input)
    size = (output_size, output_size) if isinstance(output_size, (int, np.integer)) or output_size is None \
        else tuple(output_size)
    if len(size) != 2:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be an int or a pair, got {output_size!r}")
    oh, ow = (n if s is None else int(s) for s, n in zip(size, x.shape[2:]))
    if oh < 1 or ow < 1:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got {output_size!r}")
    h, w = x.shape[2:]
    out = x if ow == w else x @ _lift(_averaging(w, ow, x.dtype).T, x)
    return out if oh == h else _lift(_averaging(h, oh, x.dtype), x) @ out


class _ConvNd(Module):
    op = ops.CONV2D
    # what the layer multiplies the gradient by (the inspector's chain-rule panel)
    factor_note = "Wᵀ window by window: the input's gradient is a transposed conv"

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 padding_mode, dtype, dims):
        super().__init__()
        name = type(self).__name__
        if groups != 1:
            raise ValueError(f"{name}: groups={groups} is not supported, only groups=1")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode={padding_mode!r} is not supported, only 'zeros'")
        norm = (lambda v, what: (_single(name, v, what),)) if dims == 1 else \
            (lambda v, what: _pair(name, v, what, 0 if what == "padding" else 1))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = norm(kernel_size, "kernel_size")
        self.stride = norm(stride, "stride")
        self.padding = padding if isinstance(padding, str) else norm(padding, "padding")
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"{name}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        self.dilation = norm(dilation, "dilation")
        self.groups = groups
        self.padding_mode = padding_mode
        self.weight = Parameter(np.empty((out_channels, in_channels, *self.kernel_size), dtype=dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))   # U(−1/√fan_in, 1/√fan_in), as PyTorch
        if bias:
            fan_in = in_channels * math.prod(self.kernel_size)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            self.bias = Parameter(np.empty(out_channels, dtype=dtype))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.bias = None

    def _check(self, x, dims):
        x = _lift(x, self.weight)
        if x.ndim != dims + 2 or x.shape[1] != self.in_channels:
            layout = "(N, C, H, W)" if dims == 2 else "(N, C, L)"
            raise ValueError(f"{describe_module(self)}: expects a batch {layout} with C = {self.in_channels} "
                             f"channels, got {x.shape}")
        return x

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0,), (0, 0)):
            text += f", padding={self.padding}"
        if self.dilation not in ((1,), (1, 1)):
            text += f", dilation={self.dilation}"
        return text + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """A 2-D convolution layer: weight (out_channels, in_channels, kh, kw), bias (out_channels,)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", dtype=np.float64):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype, 2)

    def forward(self, x):
        return conv2d(self._check(x, 2), self.weight, self.bias, self.stride, self.padding, self.dilation)


class Conv1d(_ConvNd):
    """A 1-D convolution layer over (N, C, L): weight (out_channels, in_channels, k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", dtype=np.float64):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, dtype, 1)

    def forward(self, x):
        return conv1d(self._check(x, 1), self.weight, self.bias, self.stride,
                      self.padding if isinstance(self.padding, str) else self.padding[0], self.dilation)


class MaxPool2d(Module):
    op = ops.MAXPOOL2D
    factor_note = "1 at each window's maximum, 0 elsewhere"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride if stride is not None else kernel_size, padding
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    op = ops.AVGPOOL2D
    factor_note = "1/(kh·kw), spread over each window"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride if stride is not None else kernel_size, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x):
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                          self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    factor_note = "1/(window size), spread over each window"
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
