# A tiny autoencoder: 8-dimensional points near a 2-dimensional plane squeezed through a
# bottleneck of 2 and rebuilt, trained with Adam on MSELoss. Float64, weights set from numpy in
# the order model.parameters() gives them, so the run is deterministic.
import numpy as np
import torch
import torch.nn as nn


class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 2))
        self.decoder = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 8))

    def forward(self, x):
        return self.decoder(self.encoder(x))


rng = np.random.default_rng(4)
codes = rng.standard_normal((128, 2))
data = torch.from_numpy(codes @ rng.standard_normal((2, 8)) + 0.05 * rng.standard_normal((128, 8)))

model = AutoEncoder().double()
with torch.no_grad():
    for param in model.parameters():
        param.copy_(torch.from_numpy(rng.standard_normal(tuple(param.shape)) * 0.4))

criterion = nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
losses = []
for epoch in range(300):
    reconstruction = model(data)
    loss = criterion(reconstruction, data)
    losses.append(loss.item())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

result = {"first_loss": losses[0], "final_loss": losses[-1]}
print(result)
