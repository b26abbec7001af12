"""A small PyTorch transformer block (attention written out, then a GELU MLP, each with a
LayerNorm and a shortcut) learning to read the largest value in a sequence of eight, whose
attention logits are scaled by 4 instead of by 1/√d = 0.25.

What to look for: a saturation warning on `block.softmax()`, the attention's softmax (applied as
`scores.softmax(-1)`: calcml-debug measures activations applied as functions as layers of their
own). Many of its rows put over 99% of their weight on one token, and a softmax's Jacobian,
diag(p) − ppᵀ, is then nearly 0 there: little gradient reaches the logits, so q and k, which
make them, learn slowly (open `block.softmax()` in the inspector: its mean p(1 − p) is far
below the 1/4 it can reach; and ‖∇W‖ of `block.q` and `block.k` is small beside `block.v`'s).
Set SCALE = 1 / math.sqrt(WIDTH) below, as "Attention Is All You Need" does, and run again: no
warning, more of the gradient reaches q and k, and the loss falls faster over the first steps.
The attention is written out so that the logits' gradient can be shown too; with
F.scaled_dot_product_attention(q, k, v, scale=SCALE) or nn.MultiheadAttention instead, the same
softmax is measured beside the fused function (`block.softmax()`, type attention) and warned
about alike, without gradients of its own.

This file is plain PyTorch: calcml-debug sees which framework a model file uses by itself.
"""
import math  # noqa: F401  (for the SCALE the docstring suggests)

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

seed = 0
steps = 400
batch_size = 32

TOKENS, WIDTH = 8, 16
SCALE = 4.0          # the usual scale is 1 / math.sqrt(WIDTH) = 0.25


class Block(nn.Module):
    def __init__(self, width, scale):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k, self.v = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.scale = scale

    def forward(self, x):                                   # x: (batch, tokens, width)
        h = self.ln1(x)
        scores = self.q(h) @ self.k(h).transpose(-2, -1) * self.scale
        x = x + self.proj(scores.softmax(-1) @ self.v(h))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Reader(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(1 + TOKENS, WIDTH)           # a value and its position, one-hot
        self.block = Block(WIDTH, SCALE)
        self.head = nn.Linear(WIDTH, 1)

    def forward(self, x):
        return self.head(self.block(self.embed(x)).mean(dim=1))


model = Reader()
loss = F.mse_loss
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

_rng = np.random.default_rng(seed)
_values = _rng.normal(size=(2048, TOKENS, 1))
_positions = np.broadcast_to(np.eye(TOKENS), (2048, TOKENS, TOKENS))
data = (np.concatenate([_values, _positions], axis=2).astype(np.float32),
        _values.max(axis=1).astype(np.float32))
