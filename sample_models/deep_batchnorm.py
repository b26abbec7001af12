"""The fix for deep_sigmoid.py's vanishing gradient: the same ten sigmoid layers, with BatchNorm1d
after each Linear.

In deep_sigmoid.py each sigmoid's factor σ'(z) ≤ 1/4, and far less where z is large, so the
chain-rule product from the loss down to the first layer is tiny. BatchNorm1d normalises each
unit over the batch, (z − mean)/σ, then scales and shifts it by γ and β: z stays near 0, where σ'
is largest, and its own factor (×γ/σ, minus the mean's share) makes up for small weights. Look
for: no vanishing_gradient warning; in the gradient flow the rows keep their colour down to the
input; in the inspector (enter on layer 0) the product from the loss down to layer 0 is orders of
magnitude larger than deep_sigmoid.py's, and each BatchNorm1d row says what its factor is.

One warning does show, at the start: lr_too_large. Normalising makes the loss sharper at first
(λ_max ≈ 470 at step 1, so the stability edge 2/λ_max is near 0.004); the lr 0.1 is kept from
deep_sigmoid.py so that the two runs differ only in the BatchNorm layers, and the warning clears
as the curvature falls (h shows the lr against the edge over the steps).
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.moons(n=256, noise=0.1, seed=seed)
data = (X, y)
val_data = cm.data.moons(n=128, noise=0.1, seed=seed + 1)

width, depth = 16, 10
layers = [cm.nn.Linear(2, width), cm.nn.BatchNorm1d(width), cm.nn.Sigmoid()]
for _ in range(depth - 2):
    layers += [cm.nn.Linear(width, width), cm.nn.BatchNorm1d(width), cm.nn.Sigmoid()]
layers += [cm.nn.Linear(width, 2)]
model = cm.nn.Sequential(*layers)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.SGD(model.parameters(), lr=0.1)
steps = 500
