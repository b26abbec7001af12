"""A small calcml CNN on the UCI handwritten digits (8×8 images, shipped with calcml:
`cm.data.digits(images=True)`): conv 8 → ReLU → max pool → conv 16 → ReLU → linear classifier,
trained with Adam on batches of 64.

What to look for: a healthy run. No warnings; the loss falls from about log 10 ≈ 2.3 to below
0.1 in the 300 steps. After a convolution a unit is a whole channel (dead when it is off at every
pixel of every image), so the ReLU layers' dead fractions move in eighths (layer 1, 8 channels)
and sixteenths (layer 4): layer 4 ends with 2 of its 16 channels dead, too few for a warning.
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
steps = 300

X, y = cm.data.digits(images=True)          # (1797, 1, 8, 8) in [0, 1], and the digit
data = cm.data.DataLoader((X, y), batch_size=64, seed=seed)

model = cm.nn.Sequential(
    cm.nn.Conv2d(1, 8, kernel_size=3, padding=1), cm.nn.ReLU(), cm.nn.MaxPool2d(2),
    cm.nn.Conv2d(8, 16, kernel_size=3, padding=1), cm.nn.ReLU(),
    cm.nn.Flatten(), cm.nn.Linear(16 * 4 * 4, 10),
)


def loss(logits, labels):
    return F.cross_entropy(logits, labels)


optimizer = cm.optim.Adam(model.parameters(), lr=0.01)
