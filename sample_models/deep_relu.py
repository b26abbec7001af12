"""The fix for vanishing gradients: the depth of deep_sigmoid.py, with ReLU and He initialisation.

ReLU's derivative is exactly 1 wherever a unit is active, and He (Kaiming) initialisation,
std = √(2/fan_in), keeps the size of the signal — and of the gradient — steady from layer to
layer. Compare the gradient-flow plot with deep_sigmoid.py: the lines stay together, every
layer learns, and the loss falls. No warnings.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.moons(n=256, noise=0.1, seed=seed)
data = (X, y)
val_data = cm.data.moons(n=128, noise=0.1, seed=seed + 1)

width, depth = 32, 10
layers = [cm.nn.Linear(2, width), cm.nn.ReLU()]
for _ in range(depth - 2):
    layers += [cm.nn.Linear(width, width), cm.nn.ReLU()]
layers += [cm.nn.Linear(width, 2)]
model = cm.nn.Sequential(*layers)
for layer in model:
    if isinstance(layer, cm.nn.Linear):
        cm.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        cm.nn.init.zeros_(layer.bias)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.SGD(model.parameters(), lr=0.02)
steps = 500
