"""Exploding gradients: twelve layers whose weights start three times too large.

Each layer multiplies the gradient on its way back by roughly its weights' gain: here about
3 · √2 per layer where He initialisation would give 1, so by the first layer the chain-rule
product ∂L/∂a₁ = (∂L/∂a₁₂)·(∂a₁₂/∂a₁₁)···(∂a₂/∂a₁) has grown by many orders of magnitude.
Watch the gradient-flow plot fan out upwards and the exploding_gradient warning. The learning
rate is tiny so that the weights survive long enough to look at; the fix is the initial scale.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.spirals(k=3, n=300, seed=seed)
data = (X, y)

width, depth = 32, 12
layers = [cm.nn.Linear(2, width), cm.nn.ReLU()]
for _ in range(depth - 2):
    layers += [cm.nn.Linear(width, width), cm.nn.ReLU()]
layers += [cm.nn.Linear(width, 3)]
model = cm.nn.Sequential(*layers)
for layer in model:
    if isinstance(layer, cm.nn.Linear):
        cm.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        layer.weight.data *= 3.0
        cm.nn.init.zeros_(layer.bias)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.SGD(model.parameters(), lr=1e-12)
steps = 100
