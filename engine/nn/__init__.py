"""Neural-network building blocks: `cm.nn.Linear`, `cm.nn.Sequential`, activations, init, functional."""
from . import functional, init
from .bayes import BayesLinear
from .layers import ACTIVATIONS, Identity, LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Softmax, Tanh
from .module import Module, Parameter

__all__ = [
    "Module", "Parameter", "Linear", "Sequential", "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "Softmax", "ACTIVATIONS", "functional", "init", "BayesLinear",
]
