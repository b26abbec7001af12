# A feed-forward classifier on three Gaussian blobs, in the shape of the quickstart: an
# nn.Module with Flatten and a Linear/ReLU stack, TensorDataset + a shuffling DataLoader, a
# train loop and a test loop over the loader, CrossEntropyLoss and SGD with momentum.
# The shuffle order and the initial weights come from each framework's own generator, so only
# the training itself is checked, not the numbers.
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"

rng = np.random.default_rng(2)
centres = np.array([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
labels = rng.integers(0, 3, size=300)
points = centres[labels] + 0.6 * rng.standard_normal((300, 2))
X = torch.tensor(points, dtype=torch.float32)
y = torch.tensor(labels, dtype=torch.long)

train_loader = DataLoader(TensorDataset(X[:240], y[:240]), batch_size=32, shuffle=True)
test_loader = DataLoader(TensorDataset(X[240:], y[240:]), batch_size=30)


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


model = NeuralNetwork().to(device)
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def train(dataloader):
    model.train()
    for batch, (xb, yb) in enumerate(dataloader):
        xb, yb = xb.to(device), yb.to(device)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test(dataloader):
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for xb, yb in dataloader:
            pred = model(xb.to(device))
            test_loss += loss_fn(pred, yb).item()
            correct += (pred.argmax(1) == yb).type(torch.float).sum().item()
    return test_loss / num_batches, correct / size


first_loss, first_accuracy = test(test_loader)
for epoch in range(5):
    train(train_loader)
final_loss, accuracy = test(test_loader)
with torch.no_grad():
    train_accuracy = (model(X[:240]).argmax(1) == y[:240]).float().mean().item()

result = {"first_loss": first_loss, "final_loss": final_loss, "first_accuracy": first_accuracy,
          "accuracy": accuracy, "train_accuracy": train_accuracy}
print(result)
