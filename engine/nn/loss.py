"""Loss modules with PyTorch's names: each holds its reduction and calls its nn.functional form."""
from __future__ import annotations

from . import functional as F
from .module import Module

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        if size_average is not None or reduce is not None:
            raise TypeError(f"{type(self).__name__}: size_average and reduce are PyTorch's deprecated "
                            f"arguments; use reduction='mean', 'sum' or 'none'")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
        self.reduction = reduction

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


def _unsupported(loss: str, **given) -> None:
    """Refuse PyTorch's arguments that calcml's losses do not implement, by name."""
    for name, (value, default) in given.items():
        if value is not default and value != default:
            raise NotImplementedError(f"{loss}: {name}={value!r} is not supported by calcml "
                                      f"(only the default, {default!r})")


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class HuberLoss(Module):
    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"HuberLoss: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
        if delta <= 0:
            raise ValueError(f"HuberLoss: delta must be positive, got {delta}")
        self.reduction = reduction
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, delta={self.delta}"


class BCELoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        _unsupported("BCELoss", weight=(weight, None))

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        _unsupported("BCEWithLogitsLoss", weight=(weight, None), pos_weight=(pos_weight, None))

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, reduction=self.reduction)


class NLLLoss(_Loss):
    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        _unsupported("NLLLoss", weight=(weight, None))
        self.ignore_index = ignore_index   # kept for PyTorch's signature; calcml's labels must all be classes

    def forward(self, input, target):
        return F.nll_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_Loss):
    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(size_average, reduce, reduction)
        _unsupported("CrossEntropyLoss", weight=(weight, None), label_smoothing=(label_smoothing, 0.0))
        self.ignore_index = ignore_index   # kept for PyTorch's signature; calcml's labels must all be classes

    def forward(self, input, target):
        return F.cross_entropy(input, target, reduction=self.reduction)


LOSSES = (MSELoss, L1Loss, HuberLoss, BCELoss, BCEWithLogitsLoss, NLLLoss, CrossEntropyLoss)
