"""An ill-conditioned problem where per-parameter step sizes win: Adam against gradient descent.

y = a·x₁ + b·x₂ with x₂ thirty times larger than x₁, so the mean squared error curves 900 times
more steeply along b than along a: H ≈ diag(2, 1800). One learning rate cannot suit both: gradient
descent must keep η < 2/λ_max ≈ 1/900 to stay stable along b, and then a moves by only
1 − 2η ≈ 0.2% of its error per step. Adam divides each step by √v̂, a running root-mean-square
of that parameter's own gradient, so b gets a much smaller step than a. That is roughly what a
diagonal Newton step 1/Hᵢᵢ would do. In the layer inspector compare each parameter's effective
step η/(√v̂+ε) with its Hessian diagonal Hᵢᵢ (the curvature view, key h, has both).
To compare, replace the optimizer line with
    optimizer = cm.optim.SGD(model.parameters(), lr=1e-3)
(just under the edge): b fits at once, a crawls. At lr=2e-3 the debugger warns lr_too_large.
"""
import numpy as np

import calcml as cm
import calcml.nn.functional as F

seed = 0
rng = np.random.default_rng(seed)
X = rng.standard_normal((256, 2)) * np.array([1.0, 30.0])
y = X @ np.array([[2.0], [0.5]]) + 0.01 * rng.standard_normal((256, 1))
data = (X, y)


class TwoScales(cm.nn.Module):
    """y = a·x₁ + b·x₂, with a and b separate parameters so that each gets its own row."""

    def __init__(self):
        super().__init__()
        self.a = cm.nn.Parameter(np.zeros(1))
        self.b = cm.nn.Parameter(np.zeros(1))

    def forward(self, X):
        X = cm.tensor(X)
        return X[:, 0:1] * self.a + X[:, 1:2] * self.b


model = TwoScales()


def loss(pred, target):
    return F.mse_loss(pred, target)


optimizer = cm.optim.Adam(model.parameters(), lr=0.05)
steps = 400
