"""Dead ReLUs: a bad bias initialisation switches most hidden units off for good.

The hidden layer's biases start at −0.8, so for most units (about 78% here) z = Wx + b is
negative for every input and ReLU(z) = max(0, z) outputs 0. Where z < 0, ReLU's derivative is
0, so the chain rule sends no gradient to those units' weights or biases: they never recover.
Watch the layer table's activation column ('dead 78%') and the dead_relu warning; then try
cm.nn.init.zeros_ on the biases instead.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.circles(n=256, noise=0.05, seed=seed)
data = (X, y)

model = cm.nn.Sequential(cm.nn.Linear(2, 32), cm.nn.ReLU(), cm.nn.Linear(32, 2))
cm.nn.init.constant_(model[0].bias, -0.8)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.SGD(model.parameters(), lr=0.1)
steps = 300
