"""Neural-network building blocks: `cm.nn.Linear`, `cm.nn.Sequential`, activations, init, functional."""
from . import functional, init, utils
from .bayes import BayesLinear
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, MaxPool2d
from .layers import (ACTIVATIONS, Activation, Dropout, Flatten, Identity, Linear, ModuleDict, ModuleList, Sequential,
                     Softmax, Softplus, Unflatten)
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss
from .module import Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d, Embedding, LayerNorm

# The activation modules (cm.nn.ReLU, cm.nn.LeakyReLU, cm.nn.Sigmoid, cm.nn.Tanh, ...), by name:
# each is defined in layers.py as the op of the derivative table it applies.
_ACTIVATION_MODULES = {cls.__name__: cls for cls in ACTIVATIONS if issubclass(cls, Activation)}
globals().update(_ACTIVATION_MODULES)

__all__ = [
    "Module", "Parameter", "Linear", "Sequential", "Identity", *_ACTIVATION_MODULES, "Activation",
    "Softmax", "ACTIVATIONS", "functional", "init", "utils", "BayesLinear",
    "Softplus", "Flatten", "Unflatten", "Dropout", "ModuleList", "ModuleDict", "LayerNorm", "BatchNorm1d", "Embedding",
    "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm2d",
    "MSELoss", "L1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss", "CrossEntropyLoss",
]


def __getattr__(name: str):
    # only reached for names calcml.nn does not define: say when it is a PyTorch name, and what to use
    from ..missing import NN, missing_name
    raise missing_name("calcml.nn", "torch.nn", name, NN)
