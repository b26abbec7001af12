"""A Bayesian neural network for 1-D regression: the uncertainty grows away from the data.

The data are two clusters, x in [−3, −1] and in [1, 3], with y = sin(x) + noise (σn = 0.1,
known). Every weight and bias of the network is a Gaussian N(μ, σ²) (mean-field variational
inference, prior N(0, 1)): BayesLinear(1, 16) → LeakyReLU → BayesLinear(16, 16) → LeakyReLU →
BayesLinear(16, 1). The loss is −ELBO per datum, built with cm.bayes.elbo_from_outputs from one
weight draw per step:

    −ELBO/n = −(1/n)·E_q[log p(y|x, θ)] + KL(q‖prior)/n

What to look for:
  - The ELBO terms (model.last_elbo, every step): the expected log-likelihood rises as the fit
    improves while the KL, the price of moving q away from the prior, stays large (most of
    the loss). The loss is noisy: a one-draw Monte Carlo estimate.
  - The posterior σ per layer (it starts at 0.05 everywhere): it stays small, about 0.08, in
    the first and last layers, whose weights the data constrain, and grows towards the prior's
    1 (about 0.8 by the end) in the middle layer, whose weights the 40 points barely pin down:
    VI "prunes" most of its units back to the prior.
  - The predictive uncertainty, after the run (from Python):
        band = cm.bayes.predictive(model, xs.reshape(-1, 1), samples=500)
    band.mean is the fit and band.std the spread of f(x) over weight draws: about 0.1 at the
    data, half as much again or more between the clusters (x = 0), and several times as much
    outside (x = ±6), where nothing pins the function down.

Why this architecture: with ONE hidden layer, mean-field VI cannot show the gap. For ReLU nets
the predictive variance between two inputs is at most the sum of the variances at them (Foong
et al. 2019, "'In-between' uncertainty in Bayesian neural networks"), and a tanh net
extrapolates flat, its units saturated, so its spread hardly grows outside. Two hidden
layers escape both. LeakyReLU rather than ReLU: the pruned middle units sit at the prior, and
as ReLUs half of them would be off for the whole batch at every draw (the dead_relu warning).
"""
import numpy as np

import calcml as cm

seed = 0
rng = np.random.default_rng(seed)
N, noise_sigma = 40, 0.1
x = np.concatenate([rng.uniform(-3, -1, N // 2), rng.uniform(1, 3, N - N // 2)])
X = x.reshape(-1, 1)
y = (np.sin(x) + noise_sigma * rng.standard_normal(N)).reshape(-1, 1)
data = (X, y)

model = cm.nn.Sequential(cm.nn.BayesLinear(1, 16), cm.nn.LeakyReLU(),
                         cm.nn.BayesLinear(16, 16), cm.nn.LeakyReLU(),
                         cm.nn.BayesLinear(16, 1))


def log_likelihood(out, target):
    return cm.bayes.Normal(out, noise_sigma).log_prob(target)


def loss(pred, target):
    return cm.bayes.elbo_from_outputs(model, log_likelihood, pred, target, n_data=N).loss


optimizer = cm.optim.Adam(model.parameters(), lr=0.02)
steps = 1000
