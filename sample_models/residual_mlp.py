"""A residual MLP on calcml's engine: eight blocks h + f(h), f = Linear → ReLU → Linear, learning a
wavy 2-D regression (torch_residual.py is the same model in PyTorch).

What to look for: twenty-six layers deep, no vanishing gradient. The shortcut adds the identity
to each block's factor (∂(h + f(h))/∂h = I + ∂f/∂h), so the product from the loss down to the
first block cannot collapse as deep_sigmoid.py's does. Open a block's fc1 in the inspector (↑/↓,
enter): its own factor is what f passes back through it, and the row under it, "+ other paths",
is the shortcut's gradient joining at the block's input, so the running product is again the
gradient measured there.
"""
import numpy as np

import calcml as cm
from calcml import nn

seed = 0
steps = 600
batch_size = 64


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, h):
        return h + self.fc2(self.act(self.fc1(h)))   # the shortcut


class ResidualMLP(nn.Module):
    def __init__(self, width=32, blocks=8):
        super().__init__()
        self.inp = nn.Linear(2, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(blocks))
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


cm.manual_seed(seed)
model = ResidualMLP()

rng = np.random.default_rng(seed)
X = rng.uniform(-2, 2, size=(512, 2))
y = np.sin(2 * X[:, :1]) * np.cos(X[:, 1:])
data = (X, y)

loss = nn.functional.mse_loss
optimizer = cm.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
