"""Sampling the posterior of a logistic regression with Hamiltonian Monte Carlo (cm.bayes.HMC).

The model is a line, cm.nn.Linear(2, 1) (3 parameters θ = w₁, w₂, b), on 100 points of two
noisy moons that no line separates, with a Gaussian prior θ ~ N(0, 2²I). Instead of training,
each step is one HMC transition (a fresh momentum, 8 leapfrog steps of size 0.25, a
Metropolis test), so the parameters wander over the posterior p(θ|D): the run is a Markov
chain.

The loss must be the true potential U(θ) = −log p(θ|D) + const:

    U(θ) = Σᵢ BCE(zᵢ, yᵢ)  +  ‖θ‖²/(2·2²)       (the SUM over the 100 points, plus −log prior)

NOT the usual per-datum mean: a loss n times smaller is the log density of p(θ|D)^(1/n), a
"tempered" posterior about √n = 10 times wider, and HMC would sample that faithfully.

What to look for, in the optimiser's report after each step (its state_info: the debugger's
optimizer state): the acceptance rate, about 0.9 here, and |ΔH| of each proposal. The step
size is the lr, so press ] once (once the run has ended, then t to train on): ε = 0.5 is at leapfrog's stability limit 2/√λ_max ≈ 0.5
(λ_max ≈ 16, the curvature of U along the posterior's narrowest direction; gradient descent's
edge would be 2/λ_max), |ΔH| jumps and only about 10% of the proposals are accepted; [ comes
back. The loss (= U) does not fall to a minimum: it wanders around its typical value, and the
weights keep moving even late in the run. After the run (from Python),
    optimizer.posterior_mean(model.weight), optimizer.posterior_std(model.weight)
are the posterior's mean and spread over the kept states (after burn_in = 100): the std is the
uncertainty about each weight, which gradient descent to the MAP cannot give, and the mean
is not the MAP (the posterior is skewed).
"""
import calcml as cm
import calcml.nn.functional as F

seed = 0
prior_sigma = 2.0
X, labels = cm.data.moons(n=100, noise=0.3, seed=seed)
data = (X, labels.reshape(-1, 1).astype(float))

model = cm.nn.Linear(2, 1)


def loss(z, y):
    nll = F.binary_cross_entropy_with_logits(z, y, reduction="sum")
    neg_log_prior = sum((p * p).sum() for p in model.parameters()) * (0.5 / prior_sigma ** 2)
    return nll + neg_log_prior


optimizer = cm.bayes.HMC(model.parameters(), step_size=0.25, leapfrog_steps=8, burn_in=100)
steps = 400
