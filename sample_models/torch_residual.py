"""A PyTorch residual MLP: eight blocks of Linear → ReLU(inplace=True) → Linear, whose output has
the block's input added to it in place (`out += h`, as in ResNet), learning a wavy 2-D regression.

What to look for: twelve-plus layers deep, yet the gradient reaches the first block almost
undiminished. The shortcut adds 1 to every block's factor in the chain rule (∂(h + f(h))/∂h =
I + ∂f/∂h), so the product from the loss down to block 0 cannot collapse as in deep_sigmoid.
Open a block's ReLU in the inspector (↑/↓, enter): its input is the value before the in-place
ReLU overwrote it, and its local derivative is the share of units that are on. Press n to step,
[ and ] to halve or double the learning rate and watch the loss plot answer.

This file is plain PyTorch: calcml-debug sees which framework a model file uses by itself.
"""
import numpy as np
import torch
from torch import nn

seed = 0
steps = 600
batch_size = 64


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h):
        out = self.fc2(self.act(self.fc1(h)))
        out += h                   # in place: the shortcut
        return out


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


model = ResidualMLP()

rng = np.random.default_rng(seed)
X = rng.uniform(-2, 2, size=(512, 2)).astype(np.float32)
y = (np.sin(2 * X[:, :1]) * np.cos(X[:, 1:])).astype(np.float32)
data = (X, y)

loss = nn.functional.mse_loss
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
