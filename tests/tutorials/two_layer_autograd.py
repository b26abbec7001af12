# A two-layer ReLU network fitted to random data with tensors and autograd, updating the weights
# by hand. Float64 throughout and initialised from a seeded numpy generator, so any framework that
# computes the same thing reaches the same final loss.
import numpy as np
import torch

rng = np.random.default_rng(0)
N, D_in, H, D_out = 32, 20, 16, 4
x = torch.from_numpy(rng.standard_normal((N, D_in)))
y = torch.from_numpy(rng.standard_normal((N, D_out)))

w1 = torch.tensor(rng.standard_normal((D_in, H)) * 0.3, requires_grad=True)
w2 = torch.tensor(rng.standard_normal((H, D_out)) * 0.3, requires_grad=True)

learning_rate = 1e-3
losses = []
for t in range(150):
    h = x.mm(w1).clamp(min=0)
    y_pred = h.mm(w2)
    loss = (y_pred - y).pow(2).sum()
    losses.append(loss.item())
    loss.backward()
    with torch.no_grad():
        w1 -= learning_rate * w1.grad
        w2 -= learning_rate * w2.grad
        w1.grad.zero_()
        w2.grad.zero_()

result = {"first_loss": losses[0], "final_loss": losses[-1]}
print(result)
