"""Vanishing gradients: ten sigmoid layers deep, so the chain rule multiplies ten factors σ' ≤ 1/4.

∂L/∂w₁ = (∂L/∂a₁₀)·(∂a₁₀/∂a₉)···(∂a₂/∂a₁)·(∂a₁/∂w₁), and each sigmoid contributes a factor
σ'(z) = σ(z)(1 − σ(z)) of at most 1/4. Watch the gradient-flow plot: the layers nearest the
input get gradients thousands of times smaller than the last ones, so they barely learn and
the loss hardly moves. The fix is in deep_relu.py: the same depth with ReLU and He initialisation.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.moons(n=256, noise=0.1, seed=seed)
data = (X, y)
val_data = cm.data.moons(n=128, noise=0.1, seed=seed + 1)

width, depth = 16, 10
layers = [cm.nn.Linear(2, width), cm.nn.Sigmoid()]
for _ in range(depth - 2):
    layers += [cm.nn.Linear(width, width), cm.nn.Sigmoid()]
layers += [cm.nn.Linear(width, 2)]
model = cm.nn.Sequential(*layers)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.SGD(model.parameters(), lr=0.1)
steps = 2000
