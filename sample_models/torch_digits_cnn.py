"""A small PyTorch CNN on the UCI handwritten digits (8×8 images, shipped with calcml:
`cm.data.digits()`), fed by a torch DataLoader: two convolutions with ReLU, then a linear
classifier, trained with SGD.

What to look for: the learning rate is far too high. Within a few steps most ReLU channels of
both convolutions die (dead_relu at step 6): after a convolution a unit is a whole channel, dead
when it is off at every pixel of every image, so layer 1's dead fraction moves in eighths (8
channels) and layer 3's in sixteenths. With no gradient through them the loss stalls at
log 10 ≈ 2.3, chance level. Edit lr to 0.05 and run again: no warnings, and the loss falls from
2.3 to below 0.1 in the 400 steps.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import calcml as cm

seed = 0
steps = 400

X, y = cm.data.digits(images=True)          # (1797, 1, 8, 8) in [0, 1], and the digit
# whole batches only: a last batch of 5 images would make the loss jump about on its own
data = DataLoader(TensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y)), batch_size=64,
                  shuffle=True, drop_last=True)

model = nn.Sequential(
    nn.Conv2d(1, 8, kernel_size=3, padding=1), nn.ReLU(),
    nn.Conv2d(8, 16, kernel_size=3, padding=1), nn.ReLU(),
    nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
)
loss = nn.functional.cross_entropy
optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
