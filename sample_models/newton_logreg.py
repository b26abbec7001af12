"""Newton's method on logistic regression: a gradient norm below 1e-10 in a handful of steps.

The loss is the mean binary cross-entropy of a linear model (3 parameters, two moons that a
line cannot separate, so the minimum exists and is unique). Newton's method solves
(H + λI)·d = g with the exact Hessian H = XᵀSX/n (S = diag p(1−p)) and steps θ ← θ − d: near
the minimum each step squares the error, so the number of correct digits doubles.
Open the curvature view (key h): ‖g‖ falls 1e-1, 1e-2, 1e-5, 1e-10 ... while the Newton
decrement √(gᵀH⁻¹g) and H's eigenvalues say why.
To compare with gradient descent, replace the optimizer line with
    optimizer = cm.optim.SGD(model.parameters(), lr=1.0)
and set steps = 200: the gradient norm crawls down by a roughly constant factor per step.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, labels = cm.data.moons(n=200, noise=0.3, seed=seed)
data = (X, labels.reshape(-1, 1).astype(float))

model = cm.nn.Linear(2, 1)


def loss(z, y):
    return F.binary_cross_entropy_with_logits(z, y)


optimizer = cm.optim.Newton(model.parameters(), lr=1.0, damping=1e-8)
steps = 12
