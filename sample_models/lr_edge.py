"""A learning rate just past the edge of stability: flagged at step 1, long before it diverges.

Linear regression with the mean squared error has a constant Hessian, H = 2XᵀX/n. Gradient
descent multiplies the error along H's top eigenvector by (1 − η·λ_max) every step, so it
converges only while η < 2/λ_max. This file computes λ_max from the data and sets
η = 1.1 × 2/λ_max: the error along that one direction grows by |1 − 2.2| = 1.2 per step, which
is slow at first (the loss even falls for a few steps, as the other directions converge) and
then explodes. The debugger measures λ_max itself (Lanczos on exact Hessian-vector products)
and warns lr_too_large at step 1 with the numbers. The run is over in a second or two: press
ctrl+r to start it again from step 0 (paused, the same seed), then [ to halve the learning rate
and space to run: no warning this time, and the loss falls. The curvature view (key h) plots lr
against the edge.
"""
import numpy as np

import calcml as cm
import calcml.nn.functional as F

seed = 0
rng = np.random.default_rng(seed)
X = rng.standard_normal((128, 4)) * np.array([1.0, 3.0, 0.5, 1.0])
y = X @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * rng.standard_normal((128, 1))
data = (X, y)

lambda_max = float(np.linalg.eigvalsh(2 * X.T @ X / len(X))[-1])  # the exact top eigenvalue of H

model = cm.nn.Linear(4, 1, bias=False)


def loss(pred, target):
    return F.mse_loss(pred, target)


optimizer = cm.optim.SGD(model.parameters(), lr=1.1 * 2 / lambda_max)
steps = 150
