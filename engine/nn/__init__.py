"""Neural-network building blocks: `cm.nn.Linear`, `cm.nn.Sequential`, activations, init, functional."""
from . import functional, init
from .bayes import BayesLinear
from .layers import ACTIVATIONS, Activation, Identity, Linear, Sequential, Softmax
from .module import Module, Parameter

# The activation modules (cm.nn.ReLU, cm.nn.LeakyReLU, cm.nn.Sigmoid, cm.nn.Tanh, ...), by name:
# each is defined in layers.py as the op of the derivative table it applies.
_ACTIVATION_MODULES = {cls.__name__: cls for cls in ACTIVATIONS if issubclass(cls, Activation)}
globals().update(_ACTIVATION_MODULES)

__all__ = [
    "Module", "Parameter", "Linear", "Sequential", "Identity", *_ACTIVATION_MODULES, "Activation",
    "Softmax", "ACTIVATIONS", "functional", "init", "BayesLinear",
]


def __getattr__(name: str):
    # only reached for names calcml.nn does not define: say when it is a PyTorch name, and what to use
    from ..missing import NN, missing_name
    raise missing_name("calcml.nn", "torch.nn", name, NN)
