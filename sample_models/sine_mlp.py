"""A small tanh MLP fits a noisy sine: regression on one input, with the mean squared error.

L = (1/n)Σ(ŷ − y)², so ∂L/∂ŷ = (2/n)(ŷ − y): each point pulls the curve towards itself by its
error. Press d at the start, then space: the data view draws the fitted curve over the points,
a shallow curve far from them at first (mean squared error about 0.9) that bends into the sine
as the tanh units each take a piece of it, the error falling below 0.02. No warnings.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.sine(n=80, noise=0.1, seed=seed)
data = (X.reshape(-1, 1), y.reshape(-1, 1))

model = cm.nn.Sequential(cm.nn.Linear(1, 16), cm.nn.Tanh(), cm.nn.Linear(16, 1))


def loss(pred, target):
    return F.mse_loss(pred, target)


optimizer = cm.optim.Adam(model.parameters(), lr=0.03)
steps = 400
