"""calcml: a small numpy autograd engine that records every forward value and chain-rule factor.

    import calcml as cm
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == [2., 4.]
"""
from . import bayes, curvature, data, nn, optim, reg, utils
from .curvature import hessian, hvp
from .composites import leaky_relu, logsumexp, softplus
from .gradcheck import gradcheck
from .random import manual_seed
from .tensor import Tensor, enable_grad, grad, is_grad_enabled, no_grad, set_grad_enabled, where
# PyTorch's tensor functions at the top level (cm.cat, cm.exp(x), cm.max(x, dim), ...)
from .functions import (abs, allclose, argmax, argmin, cat, chunk, clamp, clip, concat, concatenate, cos, equal,
                        exp, flatten, gather, log, log10, matmul, max, mean, min, mm, multinomial, numel, permute,
                        relu, reshape, round, sigmoid, sin, sort, split, sqrt, squeeze, stack, std, sum, tanh, topk,
                        transpose, unsqueeze, var)
from .functions import softmax, log_softmax  # dim= as torch's (these replace the composites' axis= forms)
from .tracing import Trace, trace
# PyTorch's creation functions, dtypes and devices (tensor() here also takes device=)
from .creation import (Generator, arange, as_tensor, empty, empty_like, eye, float32, float64, from_numpy, full,
                       full_like, get_default_dtype, int8, int16, int32, int64, linspace, long, normal, ones,
                       ones_like, rand, randint, randn, randperm, short, tensor, uint8, zeros, zeros_like)
import numpy as _np

from .device import backends, cuda, device
from .serialization import load, save
from .missing import TORCH as _TORCH_NAMES, missing_name as _missing_name

float = float32   # PyTorch's aliases: torch.float is float32, torch.double float64
double = float64
int = int32       # torch.int is int32 (torch.long int64); torch.bool the bool dtype
bool = _np.dtype(_np.bool_)

__version__ = "0.1.0"


def watch(model, optimizer, **options):
    """Debug a PyTorch model trained by your own loop: see calcml.debug.watch (imports torch)."""
    from .debug.watch import watch as _watch
    return _watch(model, optimizer, **options)


def __getattr__(name: str):
    # only reached for names calcml does not define: say when it is a PyTorch name, and what to use
    raise _missing_name("calcml", "torch", name, _TORCH_NAMES)


# (cm.float, cm.double, cm.int and cm.bool stay out of __all__: `from calcml import *` must not replace builtins)
_CREATION = [
    "zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like", "empty_like", "eye", "arange",
    "linspace", "randn", "rand", "randint", "randperm", "normal", "from_numpy", "as_tensor", "Generator",
    "float32", "float64", "int64", "long", "int32", "int16", "short", "int8", "uint8", "get_default_dtype", "device", "cuda", "backends", "save", "load",
]

# (sum, max, min, abs and round stay out of __all__ too: they would replace the builtins)
_FUNCTIONS = [
    "allclose", "argmax", "argmin", "cat", "chunk", "clamp", "clip", "concat", "concatenate", "cos", "equal", "exp",
    "flatten", "gather", "log", "log10", "matmul", "mean", "mm", "multinomial", "numel", "permute", "relu",
    "reshape", "sigmoid", "sin", "sort", "split", "sqrt", "squeeze", "stack", "std", "tanh", "topk", "transpose",
    "unsqueeze", "var",
]

__all__ = [
    *_CREATION, "Tensor", "tensor", "where", "grad", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "trace", "Trace",
    "gradcheck", "manual_seed", "softmax", "log_softmax", "logsumexp", "softplus", "leaky_relu",
    "nn", "optim", "reg", "data", "utils", "curvature", "hvp", "hessian", "bayes", "watch",
    *_FUNCTIONS,
]
