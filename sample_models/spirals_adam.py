"""Three interleaved spirals, cross-entropy and Adam: a healthy classifier.

The loss is −(1/n)Σ log p(correct class), computed from the logits through log-softmax so it
stays finite. Adam keeps running averages of each weight's gradient (m) and squared gradient
(v) and steps by η·m̂/(√v̂ + ε): a per-weight step size. Watch the loss fall and the validation
loss follow it; no warnings. Press d at the start, then space: the data view colours the plane
by the class the model predicts, and the three regions wind round the arms as it trains, from
a third of the points classed right to nearly all of them.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
X, y = cm.data.spirals(k=3, n=300, noise=0.2, seed=seed)
data = (X, y)
val_data = cm.data.spirals(k=3, n=150, noise=0.2, seed=seed + 1)
batch_size = 64

model = cm.nn.Sequential(
    cm.nn.Linear(2, 64), cm.nn.Tanh(),
    cm.nn.Linear(64, 64), cm.nn.Tanh(),
    cm.nn.Linear(64, 3),
)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.Adam(model.parameters(), lr=0.01)
steps = 600
