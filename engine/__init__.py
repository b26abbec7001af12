"""calcml: a small numpy autograd engine that records every forward value and chain-rule factor.

    import calcml as cm
    x = cm.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == [2., 4.]
"""
from . import bayes, curvature, data, nn, optim, reg
from .curvature import hessian, hvp
from .composites import leaky_relu, log_softmax, logsumexp, softmax, softplus
from .gradcheck import gradcheck
from .random import manual_seed
from .tensor import Tensor, enable_grad, grad, is_grad_enabled, no_grad, tensor, where
from .tracing import Trace, trace

__version__ = "0.1.0"


def watch(model, optimizer, **options):
    """Debug a PyTorch model trained by your own loop: see calcml.debug.watch (imports torch)."""
    from .debug.watch import watch as _watch
    return _watch(model, optimizer, **options)


__all__ = [
    "Tensor", "tensor", "where", "grad", "no_grad", "enable_grad", "is_grad_enabled", "trace", "Trace",
    "gradcheck", "manual_seed", "softmax", "log_softmax", "logsumexp", "softplus", "leaky_relu",
    "nn", "optim", "reg", "data", "curvature", "hvp", "hessian", "bayes", "watch",
]
