"""A tiny MLP learns XOR: four clusters, labels 1 where the two coordinates' signs differ.

No straight line separates the classes, so the hidden tanh layer has to bend the space.
Watch the loss fall from log 2 ≈ 0.69 towards 0, and the gradient norms shrink as it does:
a healthy run, with no warnings.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, labels = cm.data.xor(n=200, noise=0.15, seed=seed)
data = (X, labels.reshape(-1, 1).astype(float))

model = cm.nn.Sequential(
    cm.nn.Linear(2, 8),
    cm.nn.Tanh(),
    cm.nn.Linear(8, 1),
)


def loss(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target)


optimizer = cm.optim.Adam(model.parameters(), lr=0.05)
steps = 300
