"""PyTorch's `torch.utils` names that calcml has: `calcml.utils.data` (Dataset, DataLoader, ...)."""
from . import data

__all__ = ["data"]
