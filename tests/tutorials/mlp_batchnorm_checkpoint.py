# An MLP with BatchNorm1d and Dropout on a two-class problem, Adam with a StepLR schedule,
# model.train() for the epochs and model.eval() to measure; then a checkpoint (epoch, model and
# optimizer state) is saved, loaded into a fresh model and optimizer, and must give the same
# predictions and the same learning rate.
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import StepLR

torch.manual_seed(0)
rng = np.random.default_rng(3)
points = rng.standard_normal((256, 4))
labels = (points[:, 0] * points[:, 1] + 0.5 * points[:, 2] > 0).astype(np.float64)
X = torch.tensor(points, dtype=torch.float32)
y = torch.tensor(labels, dtype=torch.float32).unsqueeze(1)


def make_model():
    return nn.Sequential(nn.Linear(4, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))


model = make_model()
loss_fn = nn.BCEWithLogitsLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
scheduler = StepLR(optimizer, step_size=20, gamma=0.5)


def evaluate(m):
    m.eval()
    with torch.no_grad():
        logits = m(X)
        predicted = torch.round(torch.sigmoid(logits))
        return loss_fn(logits, y).item(), (predicted == y).float().mean().item(), logits


first_loss, _, _ = evaluate(model)
for epoch in range(60):
    model.train()
    # The permutation comes from numpy, not `torch.randperm(256)`: both frameworks then shuffle
    # alike (each randperm draws from its own framework's random numbers).
    perm = torch.from_numpy(rng.permutation(256))
    for start in range(0, 256, 64):
        idx = perm[start:start + 64]
        loss = loss_fn(model(X[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scheduler.step()
final_loss, accuracy, logits = evaluate(model)

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "checkpoint.pt")
    torch.save({"epoch": epoch, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(), "loss": final_loss}, path)
    checkpoint = torch.load(path, weights_only=True)
    restored = make_model()
    restored.load_state_dict(checkpoint["model_state_dict"])
    restored_optimizer = torch.optim.Adam(restored.parameters(), lr=0.02)
    restored_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
_, restored_accuracy, restored_logits = evaluate(restored)

result = {"first_loss": first_loss, "final_loss": final_loss, "accuracy": accuracy,
          "final_lr": scheduler.get_last_lr()[0], "restored_epoch": checkpoint["epoch"],
          "restored_lr": restored_optimizer.param_groups[0]["lr"],
          "restored_max_difference": (restored_logits - logits).abs().max().item()}
print(result)
