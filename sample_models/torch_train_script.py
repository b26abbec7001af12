"""An ordinary PyTorch training script: argparse, a DataLoader, its own loop. Nothing in it
knows about calcml.

    calcml-debug sample_models/torch_train_script.py -- --epochs 3 --lr 0.5

What to look for: the lr is too high for a network of sigmoids this deep. The first optimiser
step tells calcml-debug which model trains; from the next one every step is observed at
optimizer.step(), where a pause holds the loop. Watch the gradient flow shrink towards the
input (vanishing_gradient), then press [ a few times to halve the learning rate, or restart
with --lr 0.05, and compare.
"""
import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--depth", type=int, default=8)
    args = parser.parse_args()

    torch.manual_seed(0)
    X = torch.randn(512, 4)
    y = (X[:, :1] * X[:, 1:2] > 0).float()
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)

    layers = [nn.Linear(4, 16), nn.Sigmoid()]
    for _ in range(args.depth - 1):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 1))
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

    for epoch in range(args.epochs):
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        print(f"epoch {epoch + 1}: loss {total / len(X):.4f}")


if __name__ == "__main__":
    main()
