"""A loss that reaches log(0): the run stops at the first NaN and names the op that made it.

The loss is binary cross-entropy written by hand, −mean(y·log p + (1 − y)·log(1 − p)) with
p = 1/(1 + e^−z). The learning rate is far too large (the debugger says so at step 1: lr_too_large, with the
Hessian's top eigenvalue and the edge 2/λ_max), so after one step some logits z pass 37,
where p rounds to exactly 1.0 in float64: log(1 − p) = log(0) = −∞, and 0·(−∞) is NaN.
The debugger stops before the NaN reaches the weights and names the first op (in forward order)
whose output is not finite. The fix: F.binary_cross_entropy_with_logits, which computes the same
loss as softplus(z) − y·z and stays finite for any z (and a sane learning rate).
"""
import calcml as cm

seed = 0
X, labels = cm.data.moons(n=128, noise=0.1, seed=seed)
data = (X, labels.reshape(-1, 1).astype(float))

model = cm.nn.Linear(2, 1)


def loss(z, y):
    p = 1 / (1 + (-z).exp())
    return -(y * p.log() + (1 - y) * (1 - p).log()).mean()


optimizer = cm.optim.SGD(model.parameters(), lr=500.0)
steps = 200
