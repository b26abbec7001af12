"""The measured quantities, one per file; `make_all()` gives them in the order a step runs them
(and their warnings are checked in: gradients, activations, loss, curvature, mini-batch noise)."""
from __future__ import annotations

from .activation_health import ActivationHealth
from .base import Quantity
from .batch_noise import BatchNoise
from .bayes import Bayes
from .chain_rule import ChainRule
from .curvature import Curvature
from .data_view import DataViews
from .gradient_norms import GradientNorms
from .histograms import Histograms
from .loss import Loss
from .optimizer_state import OptimizerState
from .update_ratio import UpdateRatio

__all__ = ["Quantity", "make_all", "GradientNorms", "ChainRule", "ActivationHealth", "Loss", "Curvature",
           "UpdateRatio", "Bayes", "OptimizerState", "Histograms", "DataViews", "BatchNoise"]


def make_all() -> list:
    return [GradientNorms(), ChainRule(), ActivationHealth(), Loss(), Curvature(), UpdateRatio(), Bayes(),
            BatchNoise(), OptimizerState(), Histograms(), DataViews()]
