# Fit sin(x) on [-pi, pi] by a cubic: the features x, x^2, x^3 go through nn.Sequential(Linear,
# Flatten), trained with MSELoss(reduction='sum') and SGD with momentum. Float64, weights set
# from numpy. (RMSprop divides each gradient by its own running size, so weights whose gradient is
# near zero, as the even powers' are here, take steps set by rounding noise: fine for training,
# but not reproducible to 1e-8 between two frameworks: a one-ulp change to the inputs moves torch's
# own final loss by 3e-7 relative.)
import math

import numpy as np
import torch
import torch.nn as nn

x = torch.linspace(-math.pi, math.pi, 200, dtype=torch.float64)
y = torch.sin(x)
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)

model = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0, 1)).double()
rng = np.random.default_rng(1)
with torch.no_grad():
    for param in model.parameters():
        param.copy_(torch.from_numpy(rng.standard_normal(tuple(param.shape)) * 0.1))

loss_fn = nn.MSELoss(reduction='sum')
optimizer = torch.optim.SGD(model.parameters(), lr=2e-5, momentum=0.9)
losses = []
for t in range(400):
    y_pred = model(xx)
    loss = loss_fn(y_pred, y)
    losses.append(loss.item())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

linear = model[0]
result = {"first_loss": losses[0], "final_loss": losses[-1],
          "coefficients": [linear.bias.item()] + linear.weight.detach().numpy().ravel().tolist()}
print(result)
